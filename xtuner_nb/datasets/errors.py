"""The one error type bad training data raises, always naming the file, the 1-based line and what is wrong."""

from __future__ import annotations

from pathlib import Path


class DataFormatError(ValueError):
    """A dataset file (or one of its lines) cannot be used for training.

    `path`, `line` (1-based, None for file-level problems) and `detail` are kept as attributes so that a notebook
    can point at the offending line; `str(err)` reads `train.jsonl, line 3: invalid JSON (...)`.
    """

    def __init__(self, path: str | Path, line: int | None, detail: str):
        self.path, self.line, self.detail = str(path), line, detail
        where = self.path if line is None else f"{self.path}, line {line}"
        super().__init__(f"{where}: {detail}")

    def __reduce__(self):  # survive pickling through DataLoader workers
        return type(self), (self.path, self.line, self.detail)


def format_validation_error(err) -> str:
    """pydantic's ValidationError as one short line per problem: `messages[1].role: Input should be ... (got 'bot')`."""
    parts = []
    for e in err.errors(include_url=False):
        loc = ""
        for piece in e.get("loc", ()):
            loc += f"[{piece}]" if isinstance(piece, int) else (f".{piece}" if loc else str(piece))
        msg = e.get("msg", "invalid")
        if e.get("type") == "extra_forbidden":
            msg = "unknown key"
        elif e.get("type") == "missing":
            msg = "missing required key"
        got = e.get("input")
        shown = "" if e.get("type") == "missing" or isinstance(got, (dict, list)) else f" (got {_short(got)})"
        parts.append(f"{loc}: {msg}{shown}" if loc else f"{msg}{shown}")
    return "; ".join(dict.fromkeys(parts))


def _short(value, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
