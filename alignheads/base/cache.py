"""The user cache: artifacts (de-quantised models, assembled weights) built once, verified on every use.

An artifact is a directory built in a temporary sibling and renamed into place, with a
manifest of every file's size, SHA-256, modification time and a hash of fixed slices. One
process at a time builds an artifact (a file lock per artifact); the others wait and reuse it.
Every use compares names, sizes and the slice hashes (a few MB read, so a same-size overwrite
of 16 MiB or more is always caught) and fully re-hashes any file whose modification time
changed; `deep=True` (what `alignheads prepare` asks for) re-hashes everything. A directory
that fails the check (an interrupted build, a truncated or overwritten copy) is never loaded:
it is rebuilt. Temporary folders left by killed builds are removed at the next run.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from filelock import FileLock, Timeout

from .errors import AlignheadsError

MANIFEST = "alignheads-manifest.json"
_SLICE = 64 << 10  # bytes per sampled slice
_STRIDE = 16 << 20  # one slice every 16 MiB (+ the tail): a contiguous overwrite this long always hits one
_WHOLE = 1 << 20  # files up to this size are hashed whole on every use


class CacheError(AlignheadsError):
    """The cache folder cannot be used (a file in the way, not writable) or an artifact failed its check."""


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


def sample_sha256(path: Path) -> str:
    """SHA-256 of fixed slices of a file (every `_STRIDE` bytes and the tail); the whole file when small."""
    size = path.stat().st_size
    if size <= _WHOLE:
        return sha256_file(path)
    h = hashlib.sha256()
    with path.open("rb") as f:
        for offset in [*range(0, size, _STRIDE), size - _SLICE]:
            f.seek(offset)
            h.update(f.read(_SLICE))
    return h.hexdigest()


def _entry(p: Path) -> dict:
    st = p.stat()
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": sha256_file(p), "sample": sample_sha256(p)}


def _files(root: Path) -> list[Path]:
    return [p for p in sorted(root.rglob("*")) if p.is_file() and p.name != MANIFEST]


def _check(path: Path, version: str, deep: bool) -> tuple[str | None, dict | None]:
    """(why `path` is not a usable artifact of `version` or None, a refreshed manifest to write or None)."""
    manifest = path / MANIFEST
    if not manifest.is_file():
        return "no manifest (build never finished)", None
    try:
        meta = json.loads(manifest.read_text())
        expected = meta["files"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        return f"unreadable manifest ({e})", None
    if meta.get("version") != version:
        return f"built by version {meta.get('version')!r}, expected {version!r}", None
    files = {p.relative_to(path).as_posix(): p for p in _files(path)}
    if set(files) != set(expected):
        return f"file list differs from the manifest: {sorted(set(files) ^ set(expected))}", None
    refreshed = False
    for name, entry in expected.items():
        st = files[name].stat()
        if st.st_size != entry.get("size"):
            return f"{name}: size {st.st_size} != {entry.get('size')}", None
        # A file whose modification time moved (or an older manifest without samples) is re-hashed whole.
        full = deep or st.st_mtime_ns != entry.get("mtime_ns") or "sample" not in entry
        if full and sha256_file(files[name]) != entry.get("sha256"):
            return f"{name}: checksum mismatch (the file was changed after the build)", None
        if not full and sample_sha256(files[name]) != entry["sample"]:
            return f"{name}: content differs from the build (sampled checksum mismatch)", None
        if full and (st.st_mtime_ns != entry.get("mtime_ns") or "sample" not in entry):
            entry.update(mtime_ns=st.st_mtime_ns, sample=sample_sha256(files[name]))
            refreshed = True
    return None, meta if refreshed else None


def verify_artifact(path: Path, version: str, deep: bool = False) -> str | None:
    """Return None when `path` is a complete, unchanged artifact of `version`, else why it is not.

    The per-use check compares names, sizes and slice hashes, and re-hashes files whose
    modification time changed; `deep` re-hashes every file.
    """
    return _check(path, version, deep)[0]


def _write_manifest(path: Path, meta: dict) -> None:
    tmp = path / f".{MANIFEST}.tmp"
    tmp.write_text(json.dumps(meta, indent=1))
    os.replace(tmp, path / MANIFEST)


def _usable(target: Path, version: str, deep: bool, root: Path, name: str, locked: bool = False) -> str | None:
    """Why `target` cannot be used as is (None when it can); records re-verified modification times."""
    if not target.exists():
        return "not built yet"
    if not target.is_dir():
        return "a file is in its place"
    problem, refreshed = _check(target, version, deep)
    if refreshed is not None:  # verified in full: remember, so the next use is cheap again (best effort)
        with _try_lock(root, name, held=locked) as ok:
            if ok:
                try:
                    _write_manifest(target, refreshed)
                except OSError:
                    pass  # a read-only cache stays usable; it is re-hashed on every use
    return problem


def _writable_root(root: Path) -> None:
    if root.exists() and not root.is_dir():
        raise CacheError(f"the cache path {root} is a file, not a folder; set ALIGNHEADS_CACHE to a folder")
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise CacheError(f"cannot create the cache folder {root} ({e.strerror or e}); "
                         "set ALIGNHEADS_CACHE to a writable folder") from None
    if not os.access(root, os.W_OK | os.X_OK):
        raise CacheError(f"the cache folder {root} is not writable; set ALIGNHEADS_CACHE to a writable folder")


def _lock(root: Path, name: str) -> FileLock:
    return FileLock(root / f".{name}.lock")


@contextmanager
def _try_lock(root: Path, name: str, held: bool = False) -> Iterator[bool]:
    """Hold the artifact's lock if it is free right now (or `held` already); yields whether it is held."""
    if held:
        yield True
        return
    lock = _lock(root, name)
    try:
        lock.acquire(timeout=0)
    except (Timeout, OSError):
        yield False
        return
    try:
        yield True
    finally:
        lock.release()


def _remove_stale(root: Path, name: str, say: Callable[[str], None]) -> None:
    """Remove temporary folders of `name` left by killed builds (call with the artifact's lock held)."""
    for p in root.glob(f".{name}.*"):
        if p.is_dir():
            shutil.rmtree(p, ignore_errors=True)
            say(f"[alignheads] removed {p} (left by an interrupted build)")


def _built_since(target: Path, t: float) -> bool:
    try:
        return json.loads((target / MANIFEST).read_text()).get("built", 0) >= t
    except (OSError, ValueError, AttributeError):
        return False


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)  # stderr: stdout may be a JSON result another tool parses


def ensure_artifact(
    name: str,
    version: str,
    build: Callable[[Path], None],
    *,
    force: bool = False,
    deep: bool = False,
    log: Callable[[str], None] | None = None,
) -> Path:
    """Return the cache directory `name`, building it with `build(tmpdir)` if absent, broken or `force`d.

    `deep` re-hashes every file before trusting an existing build. Concurrent callers build once:
    the others wait for the lock and reuse the result (a forced rebuild that finished while a
    caller waited counts as that caller's rebuild).
    """
    root, say = cache_dir(), log or _stderr
    target = root / name
    if not force and _usable(target, version, deep, root, name) is None:
        if any(p.is_dir() for p in root.glob(f".{name}.*")):
            with _try_lock(root, name) as ok:
                if ok:
                    _remove_stale(root, name, say)
        return target
    started = time.time()
    _writable_root(root)
    lock = _lock(root, name)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        say(f"[alignheads] waiting for another process preparing {name} in {root} ...")
        lock.acquire()
    try:
        _remove_stale(root, name, say)
        if force and not _built_since(target, started):
            problem = "forced rebuild"
        else:
            problem = _usable(target, version, deep, root, name, locked=True)
        if problem is None:
            return target
        say(f"[alignheads] preparing {name} in {root} ({problem}) ...")
        _build(root, name, version, build)
        if (problem := verify_artifact(target, version, deep=True)) is not None:
            raise CacheError(f"{target}: changed while it was being written ({problem})")
    finally:
        lock.release()
    return target


def _build(root: Path, name: str, version: str, build: Callable[[Path], None]) -> None:
    """Build into a temporary sibling, write the manifest, then swap it into place."""
    target = root / name
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=root))
    try:
        build(tmp)
        meta = {"version": version, "built": time.time(), "files": {
            p.relative_to(tmp).as_posix(): _entry(p) for p in _files(tmp)}}
        _write_manifest(tmp, meta)
        if target.is_dir():
            old = tmp.with_name(tmp.name + ".old")
            os.replace(target, old)
            os.replace(tmp, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            if target.exists():
                target.unlink()
            os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
