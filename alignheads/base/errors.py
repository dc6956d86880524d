"""Error types the library raises for bad user input."""

from __future__ import annotations


class AlignheadsError(Exception):
    """Base class for errors caused by user input (files, options, model specs)."""


class DataFormatError(AlignheadsError, ValueError):
    """A data file is malformed; the message names the file, line and problem."""

    def __init__(self, path: str | None, line: int | None, problem: str):
        self.path, self.line, self.problem = path, line, problem
        where = str(path) if path is not None else "<input>"
        if line is not None:
            where += f", line {line}"
        super().__init__(f"{where}: {problem}")


class ModelSpecError(AlignheadsError, ValueError):
    """A model spec cannot be resolved or a model does not fit what was asked of it."""
