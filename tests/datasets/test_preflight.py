"""The pre-flight check of the data, on hand-made datasets with real tokenizers: each finding counted exactly, with
the file:line of its examples; strict=True stops a Trainer before it builds the model."""

from __future__ import annotations

import json

import numpy as np
import pytest

from xtuner_nb.datasets import (DataCheckError, DataloaderConfig, DatasetConfig, OpenaiTokenizeFunctionConfig,
                                check_data)

from .conftest import chat, loader_cfg, write_jsonl

# the tiny tokenizer's ChatML template, with the end-of-turn token moved out of the {% generation %} block: the mask
# transformers returns then leaves <|im_end|> untrained, a real way to train a model that never stops
def untrained_end_template(tok) -> str:
    out = tok.chat_template.replace(
        "{% generation %}{{- message['content'] + '<|im_end|>' }}{% endgeneration %}",
        "{% generation %}{{- message['content'] }}{% endgeneration %}{{- '<|im_end|>' }}")
    assert out != tok.chat_template
    return out


@pytest.fixture
def mixed_jsonl(tmp_path):
    recs = [chat(f"question {i}", f"answer number {i}") for i in range(10)]
    recs[4] = [{"role": "user", "content": "quiet"}, {"role": "assistant", "content": "not trained", "loss": False}]
    recs.append(chat("question 2", "answer number 2"))  # line 11 repeats line 3
    recs.append(chat("tell me a story", "a long answer " * 40))  # line 12: longer than max_length
    return write_jsonl(tmp_path / "mixed.jsonl", recs)


def test_counts_and_examples(mixed_jsonl, tiny_tok):
    report = check_data(loader_cfg(mixed_jsonl, max_length=96, pack_max_length=128), tiny_tok)
    (f,) = report.files
    assert f.samples == 12 and f.no_trained == [5] and f.untrained_end == [] and f.truncated == [12]
    assert f.duplicates == [(11, f"{mixed_jsonl}:3")]
    # the trained tokens the truncation cut: the whole sample's, minus what was kept
    whole = OpenaiTokenizeFunctionConfig(chat_template="qwen3").build(tiny_tok)(
        {"messages": json.loads(mixed_jsonl.read_text().splitlines()[11])})
    kept = OpenaiTokenizeFunctionConfig(chat_template="qwen3", max_length=96).build(tiny_tok)(
        {"messages": json.loads(mixed_jsonl.read_text().splitlines()[11])})
    assert f.trained_cut == sum(v != -100 for v in whole["labels"]) - sum(v != -100 for v in kept["labels"]) > 0
    kinds = {x.kind: x for x in report.warnings}
    assert set(kinds) == {"no_trained_token", "truncated", "duplicates"}
    assert kinds["no_trained_token"].examples == [f"{mixed_jsonl}:5"]
    assert kinds["truncated"].examples == [f"{mixed_jsonl}:12"]
    assert "1 of 12 samples (8.3%)" in kinds["truncated"].message
    assert kinds["duplicates"].examples == [f"{mixed_jsonl}:11 (= {mixed_jsonl}:3)"]
    assert f.lengths.max() == 96 and report.pack_max_length == 128 and 0 < report.pack_fill <= 1
    row = report.table().iloc[0]
    assert (row["samples"], row["no trained token"], row["duplicates"], row["truncated"]) == (12, 1, 1, "1 (8.3%)")
    # the tiny tokenizer's own template is ChatML too: same tokens, the export carries qwen3 all the same
    assert report.templates[0].same and report.export_template.name == "qwen3" and report.export_template.jinja


def test_strict_turns_the_warnings_into_one_error(mixed_jsonl, tiny_tok):
    with pytest.raises(DataCheckError) as err:
        check_data(loader_cfg(mixed_jsonl, max_length=96, pack_max_length=128), tiny_tok, strict=True)
    text = str(err.value)
    assert f"{mixed_jsonl}:5" in text and f"{mixed_jsonl}:12" in text and f"{mixed_jsonl}:11" in text
    assert len(err.value.report.warnings) == 3


def test_untrained_end_of_turn_is_found_and_strict_stops_the_trainer_before_the_model(tmp_path, tiny_tok,
                                                                                      tiny_ckpt):
    """A hand-made dataset rendered by a template that leaves <|im_end|> untrained: every sample is flagged, and a
    Trainer with strict_data_check=True stops before it touches the weights (here unreadable on purpose)."""
    import shutil

    from xtuner_nb.model import Qwen3DenseConfig
    from xtuner_nb.train import Trainer

    ckpt = tmp_path / "ckpt"
    shutil.copytree(tiny_ckpt, ckpt)
    (ckpt / "model.safetensors").write_bytes(b"not safetensors")  # loading it would fail: the check must come first
    cfg = json.loads((ckpt / "tokenizer_config.json").read_text())
    cfg["chat_template"] = untrained_end_template(tiny_tok)
    (ckpt / "tokenizer_config.json").write_text(json.dumps(cfg))
    (ckpt / "chat_template.jinja").unlink(missing_ok=True)
    data = write_jsonl(tmp_path / "eot.jsonl", [chat(f"q{i}", f"a{i}") for i in range(6)])

    from transformers import AutoTokenizer

    report = check_data(loader_cfg(data, chat_template="hf", pack_max_length=256), AutoTokenizer.from_pretrained(ckpt))
    assert report.files[0].untrained_end == [1, 2, 3, 4, 5, 6]
    (finding,) = report.warnings
    assert finding.kind == "untrained_end_of_turn" and "'<|im_end|>'" in finding.message
    assert finding.examples[0] == f"{data}:1"

    with pytest.raises(DataCheckError, match="does not learn to stop") as err:
        Trainer(model_cfg=Qwen3DenseConfig.from_hf(ckpt), load_from=ckpt, tokenizer_path=ckpt,
                dataloader_cfg=loader_cfg(data, chat_template="hf", pack_max_length=256), total_step=1,
                strict_data_check=True, work_dir=tmp_path / "wd", default_hooks=[])
    assert f"{data}:1" in str(err.value)


def test_the_official_qwen3_template_differs_from_qwen3_and_the_report_shows_it(tmp_path, qwen3_tok):
    data = write_jsonl(tmp_path / "q.jsonl", [chat("What is 2+2?", "4."), chat("Hi", "Hello!")])
    report = check_data(loader_cfg(data, pack_max_length=256), qwen3_tok)
    (c,) = report.templates
    assert (c.compared, c.differing, c.example_at) == (2, 2, f"{data}:1")
    assert "<think>" in c.tokenizer_text[c.first_difference:] and "<think>" not in c.training_text
    (note,) = [f for f in report.findings if f.kind == "template_differs"]
    assert note.severity == "note" and "carries the 'qwen3' template" in note.message
    assert report.warnings == []  # the export carries the training template: nothing to stop for


def test_an_end_of_turn_that_is_not_a_stop_token_is_a_warning(tmp_path, tiny_tok):
    """llama3's <|eot_id|> is no token of a ChatML tokenizer: the model would be trained to write it piece by
    piece, and no engine would stop on it."""
    data = write_jsonl(tmp_path / "l.jsonl", [chat("Hi", "Hello!")])
    report = check_data(loader_cfg(data, chat_template="llama3", pack_max_length=256), tiny_tok)
    (finding,) = [f for f in report.warnings if f.kind == "end_of_turn_not_a_stop"]
    assert "'<|eot_id|>'" in finding.message and "tokens in this tokenizer" in finding.message


def test_cut_to_pack_max_length_and_the_histogram_lengths(varied_jsonl, tiny_tok):
    cfg = loader_cfg(varied_jsonl, pack_max_length=48)
    report = check_data(cfg, tiny_tok)
    lengths = report.lengths()
    over = [f for f in report.warnings if f.kind == "cut_to_pack_max_length"]
    assert len(lengths) == 120 and int((lengths > 48).sum()) > 0
    assert over and over[0].message.split(": ")[1].startswith(f"{int((lengths > 48).sum())} samples")
    assert np.array_equal(np.sort(lengths), np.sort(cfg.build(tiny_tok).sample_lengths()))


def test_a_trainer_keeps_its_report(tmp_path, tiny_ckpt):
    from xtuner_nb.datasets import demo_data_path
    from xtuner_nb.model import Qwen3DenseConfig
    from xtuner_nb.train import Trainer

    dl = DataloaderConfig(dataset_config_list=[{"dataset": DatasetConfig(anno_path=str(demo_data_path("train"))),
                                                "tokenize_fn": OpenaiTokenizeFunctionConfig(chat_template="qwen3")}],
                          pack_max_length=512)
    trainer = Trainer(model_cfg=Qwen3DenseConfig.from_hf(tiny_ckpt), load_from=tiny_ckpt, tokenizer_path=tiny_ckpt,
                      dataloader_cfg=dl, total_step=1, work_dir=tmp_path / "wd", default_hooks=[])
    report = trainer.preflight
    assert report.files[0].samples == trainer.loader.stats.samples and report.warnings == []
    assert report.seconds < 10  # seconds, not minutes: it reads the tokens the loader already holds


def test_a_sample_whose_trained_tokens_the_truncation_all_cut_says_so(tmp_path, tiny_tok):
    """A long question and a short answer, max_length inside the question: the sample keeps no trained token, and
    the finding blames the truncation, not the data."""
    data = write_jsonl(tmp_path / "t.jsonl", [chat("Hi", "Hello!"), chat("why " * 80, "Because."),
                                              [{"role": "user", "content": "x"},
                                               {"role": "assistant", "content": "y", "loss": False}]])
    report = check_data(loader_cfg(data, max_length=32, pack_max_length=256), tiny_tok)
    (f,) = report.files
    assert f.no_trained == [2, 3] and f.truncated == [2] and f.trained_cut > 0
    (finding,) = [x for x in report.warnings if x.kind == "no_trained_token"]
    assert "in 1 of them truncation cut every trained token; the others have loss false" in finding.message
    assert finding.examples == [f"{data}:2", f"{data}:3"]


def test_a_tokenizer_template_that_refuses_a_conversation_is_a_difference_not_a_crash(tmp_path, tiny_tok):
    """Some official templates raise on a role they do not know (Gemma's on 'system'): the comparison counts that
    conversation as differing and shows the template's own error."""
    from transformers import AutoTokenizer

    folder = tmp_path / "tok"
    tiny_tok.save_pretrained(folder)
    tok = AutoTokenizer.from_pretrained(folder)
    tok.chat_template = ("{%- if messages[0]['role'] == 'system' %}{{- raise_exception('System role not supported') }}"
                         "{%- endif %}" + tiny_tok.chat_template)
    data = write_jsonl(tmp_path / "s.jsonl", [chat("Hi", "Hello!"),
                                             [{"role": "system", "content": "Be brief."}] + chat("Hi", "Hello!")])
    (c,) = check_data(loader_cfg(data, pack_max_length=256), tok).templates
    assert (c.compared, c.differing, c.example_at) == (2, 1, f"{data}:2")
    assert "refuses this conversation" in c.tokenizer_text and "System role not supported" in c.tokenizer_text
