"""Where records come from: `.jsonl` lines, `.json` arrays, `.parquet` rows, or a Hugging Face `datasets.Dataset`
passed in a notebook. Every record comes with its 1-based position (the line a `.json` array element starts on,
the row of a parquet file or Dataset), which is what errors name.

A `datasets.Dataset` given as `DatasetConfig(anno_path=ds)` is kept in this process under the name
`hf-dataset:<fingerprint>`, so the config still prints, copies and round-trips; another process (torchrun) cannot
see it and gets an error telling to save it with `ds.to_parquet(...)`.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any, Iterator

from .errors import DataFormatError

HF_PREFIX = "hf-dataset:"
FOLDER_SUFFIXES = (".jsonl", ".parquet")  # a folder's *.json may be metadata (LLaMA-Factory's dataset_info.json)
_DATASETS: dict[str, Any] = {}


def register_dataset(dataset: Any) -> str:
    """Keep a `datasets.Dataset` for this process and return the name `anno_path` refers to it by."""
    name = f"{HF_PREFIX}{dataset._fingerprint}"
    _DATASETS[name] = dataset
    return name


def is_dataset_object(value: Any) -> bool:
    return type(value).__name__ == "Dataset" and hasattr(value, "_fingerprint") and hasattr(value, "column_names")


def registered_dataset(name: str):
    try:
        return _DATASETS[name]
    except KeyError:
        raise DataFormatError(name, None, "this datasets.Dataset was passed in another Python process and is not "
                                          "available here; save it with ds.to_parquet('data.parquet') and use "
                                          "that path") from None


def unit_of(path: str | Path) -> str:
    """What the position of a record counts in this source: lines of text, or rows of a table."""
    p = str(path)
    return "row" if p.startswith(HF_PREFIX) or p.endswith(".parquet") else "line"


def bad_record(path, no, detail, skip_bad_lines: bool, skipped: list) -> None:
    if not skip_bad_lines:
        raise DataFormatError(path, no, detail, unit=unit_of(path))
    skipped.append((no, detail))


def count_hint(path: str | Path, data: bytes | None) -> int | None:
    """Records to expect (for a progress bar), when cheap to know."""
    if str(path).startswith(HF_PREFIX):
        return len(registered_dataset(str(path)))
    if data is not None and str(path).endswith(".jsonl"):
        return data.count(b"\n") + 1
    return None


def iter_records(path, data: bytes | None, skip_bad_lines: bool, skipped: list, limit: int | None = None
                 ) -> Iterator[tuple[int, Any]]:
    """Yield `(position, record)`; undecodable input raises (or, for jsonl lines, lands in `skipped`)."""
    name = str(path)
    if name.startswith(HF_PREFIX):
        records = _dataset_rows(registered_dataset(name))
    elif name.endswith(".parquet"):
        records = _parquet_rows(path, data)
    elif name.endswith(".json") and data.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"["):
        records = _json_array(path, data)
    else:
        records = _jsonl(path, data, skip_bad_lines, skipped)
    for count, item in enumerate(records, 1):
        yield item
        if limit is not None and count >= limit:
            return


def _jsonl(path, data: bytes, skip_bad_lines: bool, skipped: list):
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        lines = data.decode("utf-8").split("\n")
        raw = None
    except UnicodeDecodeError:
        raw = data.split(b"\n")
        lines = None
    for no in range(1, len(lines if lines is not None else raw) + 1):
        if lines is not None:
            text = lines[no - 1]
        else:
            try:
                text = raw[no - 1].decode("utf-8")
            except UnicodeDecodeError as e:
                bad = raw[no - 1][e.start:e.start + 1].hex()
                bad_record(path, no, f"not valid UTF-8 (byte 0x{bad} at byte {e.start + 1} of the line); "
                                     "save the file as UTF-8", skip_bad_lines, skipped)
                continue
        if not text.strip():
            continue
        try:
            record = json.loads(text)
        except json.JSONDecodeError as e:
            bad_record(path, no, f"invalid JSON ({e.msg} at column {e.colno})", skip_bad_lines, skipped)
            continue
        yield no, record


def _json_array(path, data: bytes):
    """The elements of a top-level JSON array, each with the line it starts on (one syntax error ends the file)."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data[:e.start].count(b"\n") + 1
        raise DataFormatError(path, line, "not valid UTF-8; save the file as UTF-8") from None
    decoder = json.JSONDecoder()
    pos, line, counted = text.index("[") + 1, 1, 0

    def skip(p: int) -> int:
        while p < len(text) and text[p] in " \t\r\n":
            p += 1
        return p

    pos = skip(pos)
    if pos < len(text) and text[pos] == "]":
        return
    while True:
        line += text.count("\n", counted, pos)
        counted = pos
        try:
            record, pos = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as e:
            raise DataFormatError(path, e.lineno, f"invalid JSON ({e.msg} at column {e.colno})") from None
        yield line, record
        pos = skip(pos)
        if pos < len(text) and text[pos] == ",":
            pos = skip(pos + 1)
            continue
        if pos < len(text) and text[pos] == "]":
            return
        line += text.count("\n", counted, pos)
        raise DataFormatError(path, line, "invalid JSON (expected ',' or ']' after an array element)")


def _parquet_rows(path, data: bytes):
    import pyarrow.parquet as pq

    try:
        table = pq.ParquetFile(io.BytesIO(data))
    except Exception as e:  # noqa: BLE001 - pyarrow raises several types for a damaged file
        raise DataFormatError(path, None, f"not a readable parquet file ({e})") from None
    no = 0
    for batch in table.iter_batches(batch_size=1024):
        for row in batch.to_pylist():
            no += 1
            yield no, drop_nulls(row)


def _dataset_rows(dataset):
    for no, row in enumerate(dataset, 1):
        yield no, drop_nulls(row)


def drop_nulls(value: Any) -> Any:
    """Arrow gives every struct all the fields any row has, filling the rest with None: drop those keys again, so
    a message reads as written (`{"role", "content"}`, not `{"role", "content", "tool_calls": None, ...}`)."""
    if isinstance(value, dict):
        return {k: drop_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [drop_nulls(v) for v in value]
    return value


def find_data_files(anno_path: str | Path) -> list[Path] | list[str]:
    """A file, a registered Dataset, or every `*.jsonl`/`*.parquet` under a folder (recursively, sorted)."""
    if str(anno_path).startswith(HF_PREFIX):
        registered_dataset(str(anno_path))
        return [str(anno_path)]
    p = Path(anno_path).expanduser()
    if p.is_dir():
        files = sorted(f for f in p.rglob("*") if f.is_file() and f.suffix in FOLDER_SUFFIXES)
        if not files:
            raise DataFormatError(p, None, "folder contains no *.jsonl or *.parquet files")
        return files
    if not p.exists():
        kind = "folder" if str(anno_path).endswith(("/", "\\")) or not p.suffix else "file"
        raise DataFormatError(p, None, f"{kind} not found")
    return [p]


def read_source(path) -> tuple[bytes | None, str]:
    """`(bytes, content hash)` of a file; `(None, fingerprint)` of a registered Dataset."""
    import hashlib

    if str(path).startswith(HF_PREFIX):
        return None, "hfds-" + registered_dataset(str(path))._fingerprint
    data = read_bytes(Path(path))
    return data, hashlib.sha256(data).hexdigest()


def read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise DataFormatError(path, None, "file not found") from None
    except IsADirectoryError:
        raise DataFormatError(path, None, "is a folder, expected a .jsonl, .json or .parquet file") from None
    except OSError as e:
        raise DataFormatError(path, None, f"cannot read ({e.strerror})") from None
