"""The tokenized-data cache: hits when nothing changed, misses on any change, never trusts a broken entry."""

import logging
from pathlib import Path

import numpy as np
import pytest

from xtuner_nb.datasets import DataFormatError, DatasetConfig, OpenaiTokenizeFunctionConfig
from xtuner_nb.datasets.jsonl import load_tokenized

from .conftest import chat, loader_cfg, write_jsonl


def _fn(tok, **kw):
    return OpenaiTokenizeFunctionConfig(chat_template="qwen3", **kw).build(tok)


def _entries(cache: Path) -> list[Path]:
    return sorted(p for p in cache.glob("*/*") if p.is_dir() and not p.name.startswith("."))


def _same(a, b):
    return all(np.array_equal(getattr(a, k), getattr(b, k)) for k in ("input_ids", "labels", "offsets", "lines"))


def test_second_load_hits_and_equals_fresh(varied_jsonl, tiny_tok, tmp_path):
    cache = tmp_path / "cache"
    first = load_tokenized(varied_jsonl, _fn(tiny_tok), cache_dir=cache)
    second = load_tokenized(varied_jsonl, _fn(tiny_tok), cache_dir=cache)
    fresh = load_tokenized(varied_jsonl, _fn(tiny_tok))
    assert not first.from_cache and second.from_cache and not fresh.from_cache
    assert _same(second, fresh) and len(_entries(cache)) == 1


def test_loader_with_cache_dir_gives_identical_batches(varied_jsonl, tiny_tok, tmp_path):
    cfg = loader_cfg(varied_jsonl, pack_max_length=256, cache_dir=str(tmp_path / "c"))
    a = cfg.build(tiny_tok)
    b = cfg.build(tiny_tok)
    assert not a.stats.datasets[0].from_cache and b.stats.datasets[0].from_cache
    for x, y in zip(a, b):
        assert [p["input_ids"].tolist() for p in x] == [p["input_ids"].tolist() for p in y]


def test_any_change_misses(varied_jsonl, tiny_tok, qwen2_tok, tmp_path):
    cache = tmp_path / "cache"
    load_tokenized(varied_jsonl, _fn(tiny_tok), cache_dir=cache)
    assert not load_tokenized(varied_jsonl, _fn(tiny_tok, max_length=16), cache_dir=cache).from_cache
    assert load_tokenized(varied_jsonl, _fn(tiny_tok, max_length=16), cache_dir=cache).lengths.max() == 16
    assert not load_tokenized(varied_jsonl, _fn(qwen2_tok), cache_dir=cache).from_cache
    llama = OpenaiTokenizeFunctionConfig(chat_template="llama3").build(tiny_tok)
    assert not load_tokenized(varied_jsonl, llama, cache_dir=cache).from_cache
    with open(varied_jsonl, "a") as f:
        f.write('[{"role": "user", "content": "new"}, {"role": "assistant", "content": "line"}]\n')
    changed = load_tokenized(varied_jsonl, _fn(tiny_tok), cache_dir=cache)
    assert not changed.from_cache and len(changed) == 121
    assert len(_entries(cache)) == 5


@pytest.mark.parametrize("damage", ["truncate_npy", "flip_byte", "no_meta", "bad_meta"])
def test_corrupted_entry_is_detected_and_rebuilt(varied_jsonl, tiny_tok, tmp_path, caplog, damage):
    cache = tmp_path / "cache"
    good = load_tokenized(varied_jsonl, _fn(tiny_tok), cache_dir=cache)
    (entry,) = _entries(cache)
    ids = entry / "input_ids.npy"
    if damage == "truncate_npy":
        ids.write_bytes(ids.read_bytes()[:-40])
    elif damage == "flip_byte":
        data = bytearray(ids.read_bytes())
        data[-3] ^= 0xFF
        ids.write_bytes(bytes(data))
    elif damage == "no_meta":
        (entry / "meta.json").unlink()
    else:
        (entry / "meta.json").write_text("{not json")
    with caplog.at_level(logging.WARNING, logger="xtuner_nb.datasets"):
        again = load_tokenized(varied_jsonl, _fn(tiny_tok), cache_dir=cache)
    assert not again.from_cache and _same(again, good)
    assert "corrupted or incomplete" in caplog.text
    assert load_tokenized(varied_jsonl, _fn(tiny_tok), cache_dir=cache).from_cache  # rebuilt entry is valid


def test_half_written_temp_folder_is_ignored(varied_jsonl, tiny_tok, tmp_path):
    cache = tmp_path / "cache"
    load_tokenized(varied_jsonl, _fn(tiny_tok), cache_dir=cache)
    (entry,) = _entries(cache)
    # a writer that crashed mid-way leaves only a dot-temp folder; the real name appears on rename only
    (entry.parent / f".{entry.name}.tmp-999-deadbeef").mkdir()
    import shutil

    shutil.rmtree(entry)
    assert not load_tokenized(varied_jsonl, _fn(tiny_tok), cache_dir=cache).from_cache


def test_skipped_lines_are_remembered(tmp_path, tiny_tok):
    path = write_jsonl(tmp_path / "d.jsonl", [chat("a", "b"), "{bad", chat("c", "d")])
    cache = tmp_path / "cache"
    first = load_tokenized(path, _fn(tiny_tok), cache_dir=cache, skip_bad_lines=True)
    hit = load_tokenized(path, _fn(tiny_tok), cache_dir=cache, skip_bad_lines=True)
    assert hit.from_cache and hit.skipped == first.skipped and [no for no, _ in hit.skipped] == [2]
    with pytest.raises(DataFormatError, match=r"d\.jsonl, line 2: invalid JSON"):
        load_tokenized(path, _fn(tiny_tok), cache_dir=cache, skip_bad_lines=False)


def test_cache_tag_skips_hashing(varied_jsonl, tiny_tok, tmp_path):
    cache = str(tmp_path / "cache")
    ds = DatasetConfig(anno_path=str(varied_jsonl), cache_dir=cache, cache_tag="v1")
    (first,) = ds.build(_fn(tiny_tok))
    (second,) = ds.build(_fn(tiny_tok))
    assert not first.from_cache and second.from_cache
    assert (Path(cache) / "tags.json").exists()
