"""The loader contract of docs/dev/CONTRACTS.md: steps, epochs, ranks, exact resume, stats, configs."""

import math

import pytest
import torch
from pydantic import ValidationError

from xtuner_nb.datasets import (DataloaderConfig, DatasetConfig, OpenaiTokenizeFunctionConfig,
                                PretrainTokenizeFunctionConfig, tokenize_samples)

from .conftest import chat, loader_cfg, write_jsonl

# the Trainer's keys, and XTuner's `seq_ctx` (a SequenceContext over the same tensors)
KEYS = {"input_ids", "shifted_labels", "position_ids", "cu_seq_lens", "max_length", "num_padding", "seq_ctx"}


def _ids(batches):
    return [[p["input_ids"].tolist() for p in step] for step in batches]


def test_steps_and_pack_format(varied_jsonl, tiny_tok):
    loader = loader_cfg(varied_jsonl, pack_max_length=256).build(tiny_tok, micro_batch_size=3, seed=42)
    assert len(loader) == math.ceil(loader.num_packs / 3) == loader.stats.steps_per_epoch
    steps = list(loader)
    assert len(steps) == len(loader)
    for step in steps:
        assert len(step) == 3
        for p in step:
            assert set(p) == KEYS
            assert p["input_ids"].shape == p["shifted_labels"].shape == p["position_ids"].shape == (1, 256)
            assert p["input_ids"].dtype == torch.long and p["cu_seq_lens"].dtype == torch.int32
            assert int(p["cu_seq_lens"][-1]) == 256 and isinstance(p["max_length"], int)
            ctx = p["seq_ctx"]
            assert ctx.input_ids is p["input_ids"] and ctx.position_ids is p["position_ids"]
            assert ctx.cu_seq_lens_q is ctx.cu_seq_lens_k is p["cu_seq_lens"]
            assert int(ctx.max_length_q) == int(ctx.max_length_k) == p["max_length"]
            assert ctx.num_padding == p["num_padding"]
    # every pack appears in the epoch; round_up repeats only to fill the last global batch
    seen = [p["input_ids"].tolist() for step in steps for p in step]
    distinct = {str(x) for x in seen}
    assert len(distinct) == loader.num_packs and len(seen) == len(loader) * 3


def test_epochs_reshuffle_deterministically(varied_jsonl, tiny_tok):
    cfg = loader_cfg(varied_jsonl, pack_max_length=128)
    a, b = cfg.build(tiny_tok, seed=5), cfg.build(tiny_tok, seed=5)
    first = _ids(a)
    assert first == _ids(b)  # same seed: same packs, same order
    a.set_epoch(1)
    second = _ids(a)
    assert second != first and sorted(map(str, second)) == sorted(map(str, first))
    a.set_epoch(0)
    assert _ids(a) == first
    assert _ids(cfg.build(tiny_tok, seed=6)) != first


@pytest.mark.parametrize("group_by_length", [False, True])
def test_ranks_split_each_global_batch(varied_jsonl, tiny_tok, group_by_length):
    cfg = loader_cfg(varied_jsonl, pack_max_length=128, group_by_length=group_by_length)
    r0 = cfg.build(tiny_tok, dp_rank=0, dp_size=2, micro_batch_size=2, seed=3)
    r1 = cfg.build(tiny_tok, dp_rank=1, dp_size=2, micro_batch_size=2, seed=3)
    a, b = _ids(r0), _ids(r1)
    assert len(r0) == len(r1) == math.ceil(r0.num_packs / 4)
    seen = [str(p) for step in a + b for p in step]
    assert len(set(seen)) == r0.num_packs  # together the ranks cover every pack
    if not group_by_length:  # a plain permutation does not depend on dp_size: rank r takes order[r::2]
        full = _ids(cfg.build(tiny_tok, micro_batch_size=4, dp_size=1, seed=3))
        for g, x, y in zip(full, a, b):
            assert g == [x[0], y[0], x[1], y[1]]


@pytest.mark.parametrize("k", [0, 1, 4])
def test_resume_mid_epoch_yields_exactly_the_rest(varied_jsonl, tiny_tok, k):
    cfg = loader_cfg(varied_jsonl, pack_max_length=128)
    ref = cfg.build(tiny_tok, micro_batch_size=2, seed=11)
    ref.set_epoch(3)
    expected = _ids(ref)
    run = cfg.build(tiny_tok, micro_batch_size=2, seed=11)
    run.set_epoch(3)
    it = iter(run)
    for _ in range(k):
        next(it)
    state = run.state_dict()
    assert (state["epoch"], state["step"]) == (3, k)
    fresh = cfg.build(tiny_tok, micro_batch_size=2, seed=11)
    fresh.load_state_dict(state)
    assert fresh.state_dict()["step"] == k
    assert _ids(fresh) == expected[k:]
    assert _ids(fresh) == expected  # the next iterator is a full epoch again


@pytest.mark.parametrize("group_by_length", [False, True])
def test_resume_on_another_rank_count(varied_jsonl, tiny_tok, caplog, group_by_length):
    """The plain permutation gives 1 rank exactly the packs 2 ranks had left; the length-grouped order depends on
    the rank count, which a mid-epoch resume on another count says."""
    cfg = loader_cfg(varied_jsonl, pack_max_length=128, group_by_length=group_by_length)
    two = [cfg.build(tiny_tok, dp_rank=r, dp_size=2, micro_batch_size=2, seed=3) for r in (0, 1)]
    it = iter(two[0])
    next(it)
    one = cfg.build(tiny_tok, dp_size=1, micro_batch_size=4, seed=3)
    with caplog.at_level("WARNING", logger="xtuner_nb.datasets"):
        one.load_state_dict(two[0].state_dict())
    assert ("resuming mid-epoch on 1 ranks a checkpoint taken on 2" in caplog.text) == group_by_length
    if not group_by_length:
        rest = [[x[0], y[0], x[1], y[1]] for x, y in zip(_ids(two[0])[1:], _ids(two[1])[1:])]
        assert _ids(one) == rest


def test_resume_at_epoch_end_then_next_epoch(varied_jsonl, tiny_tok):
    cfg = loader_cfg(varied_jsonl, pack_max_length=128)
    run = cfg.build(tiny_tok, seed=2)
    list(run)
    state = run.state_dict()
    fresh = cfg.build(tiny_tok, seed=2)
    fresh.load_state_dict(state)
    assert list(fresh) == []  # nothing left of that epoch; the trainer moves on with set_epoch
    fresh.set_epoch(1)
    run.set_epoch(1)
    assert _ids(fresh) == _ids(run)


def test_resume_refuses_changed_data(varied_jsonl, tiny_tok, tmp_path):
    state = loader_cfg(varied_jsonl, pack_max_length=128).build(tiny_tok, seed=2).state_dict()
    with pytest.raises(ValueError, match="cannot resume the dataloader: seed"):
        loader_cfg(varied_jsonl, pack_max_length=128).build(tiny_tok, seed=3).load_state_dict(state)
    other = write_jsonl(tmp_path / "o.jsonl", [chat("x", "y")] * 50)
    with pytest.raises(ValueError, match="cannot resume the dataloader"):
        loader_cfg(other, pack_max_length=128).build(tiny_tok, seed=2).load_state_dict(state)


def test_workers_give_the_same_batches(varied_jsonl, tiny_tok):
    in_process = loader_cfg(varied_jsonl, pack_max_length=128).build(tiny_tok, micro_batch_size=2, seed=4)
    workers = loader_cfg(varied_jsonl, pack_max_length=128, num_workers=2).build(tiny_tok, micro_batch_size=2,
                                                                                 seed=4)
    got = list(workers)
    assert _ids(got) == _ids(in_process)
    assert workers.state_dict()["step"] == len(workers)


def test_round_up_false_keeps_a_short_last_step(varied_jsonl, tiny_tok):
    loader = loader_cfg(varied_jsonl, pack_max_length=128, round_up=False).build(tiny_tok, micro_batch_size=4)
    sizes = [len(s) for s in loader]
    assert sum(sizes) == loader.num_packs and all(n == 4 for n in sizes[:-1])


def test_stats(varied_jsonl, tiny_tok):
    loader = loader_cfg(varied_jsonl, pack_max_length=256, max_length=40).build(tiny_tok)
    s = loader.stats
    lengths = loader.sample_lengths()
    assert s.samples == len(lengths) == 120 and s.packs == loader.num_packs
    assert s.tokens == lengths.sum() == loader.pack_lengths().sum()
    assert s.fill_ratio == pytest.approx(s.tokens / (s.packs * 256))
    assert 0 < s.loss_tokens < s.tokens and s.truncated > 0 and lengths.max() == 40
    text = str(s)
    assert "120 samples" in text and "truncated to max_length" in text and "fill" in text
    assert s.to_dict()["datasets"][0]["samples"] == 120


def test_truncation_warning_is_counted_once(varied_jsonl, tiny_tok, caplog):
    with caplog.at_level("WARNING", logger="xtuner_nb.datasets"):
        loader_cfg(varied_jsonl, pack_max_length=256, max_length=40).build(tiny_tok)
    lines = [r for r in caplog.records if "truncated" in r.getMessage()]
    assert len(lines) == 1 and "max_length=40" in lines[0].getMessage()


def test_sample_ratio_and_several_datasets(tmp_path, tiny_tok):
    a = write_jsonl(tmp_path / "a" / "x.jsonl", [chat(f"a{i}", "ok") for i in range(10)])
    write_jsonl(tmp_path / "a" / "sub" / "y.jsonl", [chat(f"b{i}", "ok") for i in range(6)])
    pre = write_jsonl(tmp_path / "pre.jsonl", [{"content": f"text {i}"} for i in range(4)])
    fn = OpenaiTokenizeFunctionConfig(chat_template="qwen3")
    cfg = DataloaderConfig(dataset_config_list=[
        {"dataset": DatasetConfig(anno_path=str(a.parent), sample_ratio=2.0, name="chat"), "tokenize_fn": fn},
        {"dataset": DatasetConfig(anno_path=str(pre), sample_ratio=0.5, name="pre",
                                  enable_sequential_sampler=True),
         "tokenize_fn": PretrainTokenizeFunctionConfig()}], pack_max_length=128)
    loader = cfg.build(tiny_tok)
    per = {(d.name, d.path.split("/")[-1]): d.samples for d in loader.stats.datasets}
    assert per == {("chat", "x.jsonl"): 20, ("chat", "y.jsonl"): 12, ("pre", "pre.jsonl"): 2}
    pre_samples = [loader.sample(i) for i in range(loader.stats.samples) if loader.sample(i)["path"] == str(pre)]
    lines = sorted(s["line"] for s in pre_samples)
    assert lines == [1, 2]  # sequential: the first half


def test_group_by_length_rule():
    assert DataloaderConfig().group_by_length is True
    assert DataloaderConfig(pack_level="none").group_by_length is False
    assert DataloaderConfig(pack_level="hard").group_by_length is True
    with pytest.raises(ValidationError, match="group_by_length"):
        DataloaderConfig(pack_level="none", group_by_length=True)


def test_xtuner_defaults():
    c = DataloaderConfig()
    assert (c.pack_level, c.pack_max_length, c.pack_to_max_length, c.pack_extra_buffer_size, c.num_workers,
            c.pad_token_id, c.round_up, c.collator, c.global_pack, c.pack_chunk_size) == (
        "soft", 32768, True, 100, 0, None, True, "sft_llm_collator", True, 10000)
    d = DatasetConfig(anno_path="x.jsonl")
    assert (d.cache_dir, d.cache_tag, d.name, d.class_name, d.sample_ratio, d.skip_bad_lines) == (
        None, None, "default", "JsonlDataset", 1.0, False)
    t = OpenaiTokenizeFunctionConfig(chat_template="qwen3")
    assert (t.max_length, t.hash) == (None, None)
    for cls in (DataloaderConfig, DatasetConfig, OpenaiTokenizeFunctionConfig, PretrainTokenizeFunctionConfig):
        assert all(f.description for f in cls.model_fields.values()), cls


def test_config_round_trip(tmp_path):
    cfg = loader_cfg(tmp_path / "d.jsonl", max_length=512, cache_dir=str(tmp_path / "c"), pack_max_length=1024)
    assert DataloaderConfig.from_json(cfg.to_json()) == cfg
    assert DataloaderConfig.from_yaml(cfg.to_yaml()) == cfg
    back = DataloaderConfig.from_dict(cfg.to_dict())
    assert isinstance(back.dataset_config_list[0]["dataset"], DatasetConfig)
    assert isinstance(back.dataset_config_list[0]["tokenize_fn"], OpenaiTokenizeFunctionConfig)
    assert "OpenaiTokenizeFunctionConfig(chat_template='qwen3', max_length=512)" in cfg.to_python()
    with pytest.raises(ValidationError, match="tokenize_fn"):
        DataloaderConfig(dataset_config_list=[{"dataset": DatasetConfig(anno_path="x")}])


def test_pad_token_and_byte_tokenizer(varied_jsonl, byte_tok, tiny_tok):
    loader = loader_cfg(varied_jsonl, pack_max_length=1024).build(byte_tok)
    p = next(iter(loader))[0]
    assert int(p["input_ids"][0, -1]) == 258  # UTF8ByteTokenizer pad
    loader = loader_cfg(varied_jsonl, pack_max_length=1024, pad_token_id=7).build(tiny_tok)
    assert int(next(iter(loader))[0]["input_ids"][0, -1]) == 7


def test_tokenize_samples_for_the_viewer(varied_jsonl, tiny_tok):
    samples = tokenize_samples(loader_cfg(varied_jsonl), tiny_tok, n=3)
    assert [s["line"] for s in samples] == [1, 2, 3]
    assert all(len(s["input_ids"]) == len(s["labels"]) == s["num_tokens"] for s in samples)


class _UpperFnConfig:
    """A custom tokenize function in XTuner's protocol: build(tokenizer, tokenizer_hash, anno_name) -> callable."""

    def build(self, tokenizer, tokenizer_hash=None, anno_name=None, **kw):
        def fn(item):
            if "text" not in item:
                raise KeyError("text")
            ids = tokenizer.encode(item["text"].upper(), add_special_tokens=False)
            return {"input_ids": ids, "labels": ids, "num_tokens": len(ids)}

        return fn


def test_custom_tokenize_function_and_collator_path(tmp_path, byte_tok):
    from xtuner_nb.datasets import DataFormatError

    path = write_jsonl(tmp_path / "t.jsonl", [{"text": "abc"}, {"text": "de"}])
    cfg = DataloaderConfig(dataset_config_list=[{"dataset": DatasetConfig(anno_path=str(path)),
                                                 "tokenize_fn": _UpperFnConfig()}], pack_max_length=16,
                           collator="xtuner_nb.datasets.collator.sft_llm_collator")
    loader = cfg.build(byte_tok)
    assert sorted(loader.sample(i)["input_ids"] for i in range(2)) == [[65, 66, 67], [68, 69]]
    write_jsonl(path, [{"text": "abc"}, {"txt": "oops"}])
    with pytest.raises(DataFormatError, match=r"t\.jsonl, line 2: tokenize_fn raised KeyError"):
        cfg.build(byte_tok)
    with pytest.raises(ValueError, match="has no hash"):
        DataloaderConfig(dataset_config_list=[{"dataset": DatasetConfig(anno_path=str(path), cache_dir=str(tmp_path)),
                                               "tokenize_fn": _UpperFnConfig()}]).build(byte_tok)


def test_progress_bar_on_request(varied_jsonl, tiny_tok, capsys):
    loader_cfg(varied_jsonl, pack_max_length=256).build(tiny_tok, progress=True)
    assert "Tokenizing varied.jsonl" in capsys.readouterr().err
    loader_cfg(varied_jsonl, pack_max_length=256).build(tiny_tok)  # small data: quiet by default
    assert "Tokenizing" not in capsys.readouterr().err


def test_no_tokenizer_means_bytes_and_overlong_warning(varied_jsonl, caplog):
    with caplog.at_level("WARNING", logger="xtuner_nb.datasets"):
        loader = loader_cfg(varied_jsonl, pack_max_length=64).build(None)
    assert loader.pad_token_id == 258 and loader.stats.cut_to_pack_max_length > 0
    assert "longer than pack_max_length=64" in caplog.text
