"""One writer per run: every file a run leaves (translate, simulate) goes through a `RunFolder`.

The folder is held from the start of the run to its end by a lock file (a second run into the same folder is
refused, never mixed with the first); files are staged as temp files beside their final names (a full disk shows
at once, before anything of the previous run is touched) and renamed into place together by `commit`, which also
removes what the previous run wrote that this one did not (the set of files is listed in `RUN_RECORD`): a re-run
replaces the previous run's files as a set. A staged file that would replace one of the run's inputs (same path
or inode) is refused before anything is renamed.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .errors import AlignheadsError
from .fileio import ensure_dir, json_default, refuse_overwriting

LOCK = ".alignheads-run.lock"
RUN_RECORD = ".alignheads-run.json"  # the names of the files the last committed run wrote


class RunFolder:
    """The output folder of one run; use as a context manager (see the module docstring)."""

    def __init__(self, path: str | os.PathLike, inputs: Iterable[str | os.PathLike | None] = (), what: str = "--out"):
        self.path = Path(path)
        self.what = what
        self.inputs = [Path(p) for p in inputs if p is not None and str(p) != "-"]
        self._staged: dict[str, Path] = {}
        self._lock = None

    # --------------------------------------------------------------------------------- holding the folder
    def __enter__(self) -> RunFolder:
        from filelock import FileLock, Timeout

        ensure_dir(self.path, f"{self.what} folder")
        lock = FileLock(self.path / LOCK)
        try:
            lock.acquire(timeout=0)
        except Timeout:
            raise AlignheadsError(f"{self.path}: another alignheads run is writing into this folder (lock "
                                  f"{LOCK}); wait for it to finish or choose another {self.what}") from None
        self._lock = lock
        return self

    def __exit__(self, *exc) -> None:
        self.abort()
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    # --------------------------------------------------------------------------------- staging and committing
    def add(self, name: str, text: str) -> Path:
        """Stage file `name` (a plain name inside the folder) with `text`; returns its final path."""
        if Path(name).name != name or name in (LOCK, RUN_RECORD):
            raise AlignheadsError(f"a run file must be a plain name inside the folder, got {name!r}")
        final = self.path / name
        self._refuse_inputs(final)
        fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=self.path)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(text)
                f.flush()
                os.fsync(f.fileno())
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        if name in self._staged:
            self._staged[name].unlink(missing_ok=True)
        self._staged[name] = Path(tmp)
        return final

    def add_json(self, name: str, obj: Any) -> Path:
        """Stage `obj` (numpy values allowed) as indented UTF-8 JSON."""
        return self.add(name, json.dumps(obj, indent=2, ensure_ascii=False, default=json_default) + "\n")

    def add_jsonl(self, name: str, rows: Iterable[dict]) -> Path:
        """Stage one JSON object per line."""
        return self.add(name, "".join(json.dumps(r, ensure_ascii=False, default=json_default) + "\n" for r in rows))

    def commit(self) -> list[Path]:
        """Rename every staged file into place and remove the previous run's files this run did not write."""
        for name in self._staged:
            self._refuse_inputs(self.path / name)
        previous = self._previous_files()
        for name, tmp in self._staged.items():
            os.replace(tmp, self.path / name)
        written = sorted(self._staged)
        for name in sorted(set(previous) - set(written)):
            (self.path / name).unlink(missing_ok=True)
        record = self.path / RUN_RECORD
        tmp = record.with_name(record.name + ".tmp")
        tmp.write_text(json.dumps({"files": written}) + "\n", encoding="utf-8")
        os.replace(tmp, record)
        self._staged = {}
        return [self.path / n for n in written]

    def commit_partial(self, summary: dict[str, Any], error: OSError, name: str = "scores.json"):
        """After a failed write (a full disk): drop what was staged, commit the run's summary alone, marked
        `"partial": true` with the reason (best effort), and raise a clear error."""
        self.abort()
        reason = f"could not write the run's files ({error.strerror or error})"
        try:
            self.add_json(name, {**summary, "partial": True, "stopped": reason})
            self.commit()
        except OSError:
            self.abort()
        raise AlignheadsError(f"{self.path}: {reason}; {name} marks the run partial if it could be written") from None

    def abort(self) -> None:
        """Drop everything staged (the folder keeps the previous run's files)."""
        for tmp in self._staged.values():
            tmp.unlink(missing_ok=True)
        self._staged = {}

    # --------------------------------------------------------------------------------- helpers
    def _previous_files(self) -> list[str]:
        try:
            names = json.loads((self.path / RUN_RECORD).read_text(encoding="utf-8"))["files"]
        except (OSError, ValueError, KeyError, TypeError):
            return []
        return [n for n in names if isinstance(n, str) and Path(n).name == n and n not in (LOCK, RUN_RECORD)]

    def _refuse_inputs(self, target: Path) -> None:
        refuse_overwriting(target, self.inputs, self.what)
