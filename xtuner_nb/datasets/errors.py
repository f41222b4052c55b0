"""The one error type bad training data raises, always naming the file, the 1-based line and what is wrong."""

from __future__ import annotations

from pathlib import Path


class DataFormatError(ValueError):
    """A dataset file (or one of its lines) cannot be used for training.

    `path`, `line` (1-based, None for file-level problems) and `detail` are kept as attributes so that a notebook
    can point at the offending line; `str(err)` reads `train.jsonl, line 3: invalid JSON (...)`. Table sources
    (parquet, a `datasets.Dataset`) count rows instead: `train.parquet, row 3: ...`.
    """

    def __init__(self, path: str | Path, line: int | None, detail: str, unit: str = "line"):
        self.path, self.line, self.detail, self.unit = str(path), line, detail, unit
        where = self.path if line is None else f"{self.path}, {unit} {line}"
        super().__init__(f"{where}: {detail}")

    def __reduce__(self):  # survive pickling through DataLoader workers
        return type(self), (self.path, self.line, self.detail, self.unit)

