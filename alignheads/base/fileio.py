"""Atomic file writing: outputs appear whole or not at all."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


@contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w", encoding: str | None = "utf-8") -> Iterator[Any]:
    """Open a temp file beside `path`; rename it onto `path` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; outputs get the usual permissions
    binary = "b" in mode
    try:
        with os.fdopen(fd, mode, encoding=None if binary else encoding) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def ensure_dir(path: str | os.PathLike, what: str = "output folder") -> Path:
    """Create folder `path` (with parents) and check that files can be written in it, before any long work."""
    from .errors import AlignheadsError

    path = Path(path)
    if path.exists() and not path.is_dir():
        raise AlignheadsError(f"{path}: the {what} is a file, not a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".alignheads-probe.", dir=path)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise AlignheadsError(f"{path}: cannot write into the {what} ({e.strerror or e})") from None
    return path


def ensure_file_writable(path: str | os.PathLike, what: str = "output file") -> Path:
    """Check that file `path` can be written (its folder is created), before any long work."""
    from .errors import AlignheadsError

    path = Path(path)
    if path.is_dir():
        raise AlignheadsError(f"{path}: the {what} is a folder; give a file name")
    ensure_dir(path.parent, f"folder of the {what}")
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def refuse_overwriting(target: str | os.PathLike, inputs, what: str = "--out") -> None:
    """Raise when writing `target` would replace one of `inputs` (the same path, or another name of the same file)."""
    from .errors import AlignheadsError

    target = Path(target)
    for source in inputs:
        if source is None or str(source) == "-":
            continue
        source = Path(source)
        same = target.resolve() == source.resolve()
        if not same and target.exists() and source.exists():
            try:
                same = os.path.samefile(target, source)
            except OSError:
                same = False
        if same:
            raise AlignheadsError(f"{target}: writing it would replace the input {source}; choose another {what}")


def write_text(path: str | os.PathLike, text: str) -> None:
    """Write `text` to `path` atomically."""
    with atomic_open(path) as f:
        f.write(text)


def json_default(o: Any) -> Any:
    """`json.dumps(default=...)` for numpy scalars and arrays."""
    import numpy as np

    if isinstance(o, np.integer | np.floating | np.bool_):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write `obj` (numpy values allowed) as indented UTF-8 JSON to `path` atomically."""
    write_text(path, json.dumps(obj, indent=2, ensure_ascii=False, default=json_default) + "\n")


def read_jsonl(path: str | os.PathLike, what: str = "JSONL") -> Iterator[tuple[int, dict]]:
    """Yield (line number, object) for each non-blank line; DataFormatError naming file and line otherwise."""
    from .errors import DataFormatError

    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise DataFormatError(str(path), None, f"cannot read {what} ({e})") from None
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataFormatError(str(path), lineno, f"not valid JSON ({e.msg} at column {e.colno})") from None
        if not isinstance(record, dict):
            raise DataFormatError(str(path), lineno, "expected a JSON object")
        yield lineno, record
