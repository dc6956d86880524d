"""The user cache: artifacts (de-quantised models, assembled weights) built once, verified on every use.

An artifact is a directory built in a temporary sibling and renamed into place, with a
manifest of every file's size and SHA-256. A directory whose manifest is missing or does not
match its files (an interrupted build, a truncated copy) is never loaded: it is rebuilt.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

MANIFEST = "alignheads-manifest.json"


def cache_dir() -> Path:
    """The cache root: `$ALIGNHEADS_CACHE`, else `~/.cache/alignheads`."""
    root = os.environ.get("ALIGNHEADS_CACHE") or Path.home() / ".cache" / "alignheads"
    return Path(root).expanduser()


def sha256_file(path: Path) -> str:
    """SHA-256 of a file, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _file_table(root: Path, hashes: bool) -> dict[str, dict]:
    table = {}
    for p in sorted(root.rglob("*")):
        if p.is_file() and p.name != MANIFEST:
            entry: dict = {"size": p.stat().st_size}
            if hashes:
                entry["sha256"] = sha256_file(p)
            table[p.relative_to(root).as_posix()] = entry
    return table


def verify_artifact(path: Path, version: str, deep: bool = False) -> str | None:
    """Return None when `path` is a complete artifact of `version`, else why it is not.

    The quick check compares file names and sizes with the manifest; `deep` also re-hashes.
    """
    manifest = path / MANIFEST
    if not manifest.is_file():
        return "no manifest (build never finished)"
    try:
        meta = json.loads(manifest.read_text())
    except (OSError, json.JSONDecodeError) as e:
        return f"unreadable manifest ({e})"
    if meta.get("version") != version:
        return f"built by version {meta.get('version')!r}, expected {version!r}"
    actual = _file_table(path, hashes=deep)
    expected = meta.get("files", {})
    if set(actual) != set(expected):
        return f"file list differs from the manifest: {sorted(set(actual) ^ set(expected))}"
    for name, entry in expected.items():
        if actual[name]["size"] != entry["size"]:
            return f"{name}: size {actual[name]['size']} != {entry['size']}"
        if deep and actual[name]["sha256"] != entry["sha256"]:
            return f"{name}: checksum mismatch"
    return None


def ensure_artifact(
    name: str,
    version: str,
    build: Callable[[Path], None],
    *,
    force: bool = False,
    log: Callable[[str], None] | None = None,
) -> Path:
    """Return the cache directory `name`, building it with `build(tmpdir)` if absent or broken."""
    target = cache_dir() / name
    problem = "forced rebuild" if force else (verify_artifact(target, version) if target.exists() else "not built yet")
    if problem is None:
        return target
    message = f"[alignheads] preparing {name} in {target.parent} ({problem}) ..."
    if log:
        log(message)
    else:  # stderr: stdout may be a JSON result another tool parses
        print(message, file=sys.stderr, flush=True)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=target.parent))
    try:
        build(tmp)
        meta = {"version": version, "files": _file_table(tmp, hashes=True)}
        (tmp / MANIFEST).write_text(json.dumps(meta, indent=1))
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target
