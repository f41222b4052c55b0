"""Formats people have (ShareGPT, Alpaca, LLaMA-Factory, OpenAI) and sources (.jsonl, .json arrays, .parquet, a
`datasets.Dataset`), on LLaMA-Factory's public demo data (the llamafactory sdist): every record converts, tool calls
and tools survive, errors name the file and the line (or row)."""

import json
import logging

import numpy as np
import pytest

from xtuner_nb.datasets import DataFormatError, DatasetConfig, OpenaiTokenizeFunctionConfig, label_spans
from xtuner_nb.datasets.formats import convert, detect_format

from .conftest import write_jsonl

# file -> (format detected, number of records)
DEMO = {"alpaca_en_demo.json": ("alpaca", 999), "identity.json": ("alpaca", 91),
        "glaive_toolcall_en_demo.json": ("sharegpt", 300), "v1_sft_demo.jsonl": ("llamafactory", 500),
        "reason_tool_use_demo_50.jsonl": ("llamafactory", 50)}


def build(tok, path, template="qwen3", **kw):
    fn = OpenaiTokenizeFunctionConfig(chat_template=template).build(tok)
    (tf,) = DatasetConfig(anno_path=path, **kw).build(fn)
    return tf


def count(tok, tf, text):
    """Occurrences of a special token (e.g. <tool_call>) in the trained / all tokens of a tokenized file."""
    tid = tok.convert_tokens_to_ids(text)
    return int(np.sum(tf.labels == tid)), int(np.sum(tf.input_ids == tid))


def assert_turns_trained(tok, tf, assistant_turns):
    """Each conversation trains one span per assistant turn, each ending with <|im_end|>, none holding a header."""
    for i, n in enumerate(assistant_turns):
        sample = tf.sample(i)
        spans = [t for t, trained in label_spans(tok, sample["input_ids"], sample["labels"]) if trained]
        assert len(spans) == n and all(s.endswith("<|im_end|>") and "<|im_start|>" not in s for s in spans)


@pytest.mark.parametrize("name", sorted(DEMO))
def test_every_demo_record_converts(llamafactory_data_dir, qwen3_tok, name):
    fmt, n = DEMO[name]
    tf = build(qwen3_tok, llamafactory_data_dir / name)
    assert (tf.data_format, len(tf), tf.num_lines, tf.skipped) == (fmt, n, n, [])
    assert np.all(tf.loss_counts > 0)  # every conversation has a trained answer


def test_json_array_records_know_their_line(llamafactory_data_dir, qwen3_tok):
    path = llamafactory_data_dir / "alpaca_en_demo.json"
    starts = [i + 1 for i, line in enumerate(path.read_text(encoding="utf-8").split("\n")) if line == "  {"]
    assert build(qwen3_tok, path).lines.tolist() == starts


def test_sharegpt_tool_calls_and_tools_survive(llamafactory_data_dir, qwen3_tok):
    """glaive_toolcall: every function_call turn is a trained <tool_call>, every observation a masked
    <tool_response>, and the tool schemas are in the system prompt, with the official template."""
    path = llamafactory_data_dir / "glaive_toolcall_en_demo.json"
    records = json.loads(path.read_text(encoding="utf-8"))
    turns = [t["from"] for r in records for t in r["conversations"]]
    tf = build(qwen3_tok, path, template="hf")
    with_tools = sum(1 for r in records if json.loads(r["tools"]))
    trained, everywhere = count(qwen3_tok, tf, "<tool_call>")
    assert trained == turns.count("function_call") == 211
    assert everywhere == trained + 2 * with_tools  # the tools prompt of the system turn shows the tag twice
    assert count(qwen3_tok, tf, "<tool_response>") == (0, turns.count("observation"))
    assert_turns_trained(qwen3_tok, tf, [sum(t["from"] in ("gpt", "function_call") for t in r["conversations"])
                                         for r in records])
    for i in (0, 150, 299):
        text = qwen3_tok.decode(tf.sample(i)["input_ids"])
        for tool in json.loads(records[i]["tools"]):
            assert json.dumps(tool, ensure_ascii=False) in text  # the schema, as the official template renders it


def test_llamafactory_reasoning_and_tool_calls(llamafactory_data_dir, qwen3_tok, caplog):
    path = llamafactory_data_dir / "reason_tool_use_demo_50.jsonl"
    parts = [p["type"] for line in path.read_text().splitlines() for m in json.loads(line)["messages"]
             for p in m["content"]]
    hf = build(qwen3_tok, path, template="hf")
    assert count(qwen3_tok, hf, "<tool_call>")[0] == parts.count("tool_call") == 68
    assert_turns_trained(qwen3_tok, hf, [sum(m["role"] == "assistant" for m in json.loads(line)["messages"])
                                         for line in path.read_text().splitlines()])
    # the official template renders the reasoning of the turns after the last user query and drops the others:
    # rendered + reported as dropped = every reasoning part
    think = count(qwen3_tok, hf, "<think>")[0]
    assert think + hf.dropped["reasoning"] == parts.count("reasoning") == 112 and think > 0
    # XTuner's qwen3 renders no reasoning at all: every one counted, and one warning for the file
    with caplog.at_level(logging.WARNING, logger="xtuner_nb.datasets"):
        q3 = build(qwen3_tok, path, template="qwen3")
    assert q3.dropped == {"reasoning": 112} and count(qwen3_tok, q3, "<think>") == (0, 0)
    assert count(qwen3_tok, q3, "<tool_call>")[0] == 68
    warnings = [r.getMessage() for r in caplog.records if "'qwen3'" in r.getMessage()]
    assert len(warnings) == 1 and "112 assistant turns" in warnings[0] and "chat_template='hf'" in warnings[0]


def test_same_tokens_from_jsonl_parquet_and_dataset(llamafactory_data_dir, qwen3_tok, tmp_path):
    import datasets

    records = json.loads((llamafactory_data_dir / "identity.json").read_text(encoding="utf-8"))
    ref = build(qwen3_tok, llamafactory_data_dir / "identity.json")
    ds = datasets.Dataset.from_list(records)
    ds.to_parquet(tmp_path / "identity.parquet")
    sources = [write_jsonl(tmp_path / "identity.jsonl", records), tmp_path / "identity.parquet", ds]
    for source in sources:
        tf = build(qwen3_tok, source)
        assert tf.data_format == "alpaca" and np.array_equal(tf.input_ids, ref.input_ids)
        assert np.array_equal(tf.labels, ref.labels) and tf.lines.tolist() == list(range(1, 92))


def test_dataset_object_with_messages_and_its_config(qwen3_tok):
    """A Dataset of OpenAI messages: arrow fills absent keys with None, which must not turn into errors."""
    import datasets

    rows = [{"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]},
            {"messages": [U := {"role": "user", "content": "Weather?"},
                          {"role": "assistant", "content": None,
                           "tool_calls": [{"type": "function",
                                           "function": {"name": "w", "arguments": '{"c": "P"}'}}]}]}]
    ds = datasets.Dataset.from_list(rows)
    cfg = DatasetConfig(anno_path=ds)
    assert cfg.anno_path.startswith("hf-dataset:") and DatasetConfig.from_json(cfg.to_json()) == cfg
    (tf,) = cfg.build(OpenaiTokenizeFunctionConfig(chat_template="hf").build(qwen3_tok))
    assert len(tf) == 2 and tf.data_format == "openai" and U["content"] in qwen3_tok.decode(tf.sample(1)["input_ids"])
    with pytest.raises(DataFormatError, match="to_parquet"):
        DatasetConfig(anno_path="hf-dataset:not-in-this-process").build(None)


@pytest.mark.parametrize("records, data_format, detail", [
    ([{"conversations": [{"from": "human", "value": "a"}, {"from": "gpt", "value": "b"}]},
      {"conversations": [{"from": "human", "value": "a"}, {"from": "bot", "value": "b"}]}], "auto",
     r"line 2: conversations turn 2 has unknown 'from' value 'bot' .*\(read as sharegpt: detected from the first"),
    ([{"conversations": [{"from": "human", "value": "a"}, {"from": "function_call", "value": "{oops"}]}], "auto",
     r"line 1: conversations turn 2: the tool call is not valid JSON"),
    ([{"instruction": "a", "output": "b"}, {"instruction": "a", "input": "b"}], "auto",
     r"line 2: an Alpaca record needs an 'output' string"),
    ([{"instruction": "a", "output": "b", "history": [["q"]]}], "auto",
     r"line 1: Alpaca 'history' entry 1 must be a \[query, answer\] pair"),
    ([{"messages": [{"role": "user", "content": [{"type": "image_url", "value": "x.png"}], "loss_weight": 0}]}],
     "auto", r"line 1: message 1 \(user\): content part 1 must be .*images"),
    ([[{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]], "sharegpt",
     r"line 1: a sharegpt record must be a JSON object .*chosen in DatasetConfig.data_format"),
])
def test_format_errors_name_file_and_line(tmp_path, qwen3_tok, records, data_format, detail):
    path = write_jsonl(tmp_path / "data.jsonl", records)
    with pytest.raises(DataFormatError, match=detail) as info:
        build(qwen3_tok, path, data_format=data_format)
    assert str(info.value).startswith(f"{path}, line ")


def test_json_array_and_parquet_errors(tmp_path, qwen3_tok):
    import datasets

    good = {"instruction": "a", "output": "b"}
    path = tmp_path / "data.json"
    path.write_text(json.dumps([good, good, {"instruction": "c"}], indent=2))
    with pytest.raises(DataFormatError, match=r"data\.json, line 10: an Alpaca record needs an 'output'"):
        build(qwen3_tok, path)
    path.write_text('[\n {"instruction": "a", "output": "b"},\n {"instruction": oops}\n]')
    with pytest.raises(DataFormatError, match=r"data\.json, line 3: invalid JSON"):
        build(qwen3_tok, path)
    datasets.Dataset.from_list([good, {"instruction": "c", "output": None}]).to_parquet(tmp_path / "d.parquet")
    with pytest.raises(DataFormatError, match=r"d\.parquet, row 2: an Alpaca record needs an 'output'"):
        build(qwen3_tok, tmp_path / "d.parquet")


def test_conversions_by_hand():
    assert convert({"instruction": "Sum", "input": "1 2", "output": "3", "system": "S",
                    "history": [["hi", "hello"]]}, "alpaca") == {"messages": [
        {"role": "system", "content": "S"}, {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "hello"}, {"role": "user", "content": "Sum\n1 2"},
        {"role": "assistant", "content": "3"}]}
    calls = '[{"name": "f", "arguments": {"x": 1}}, {"name": "g", "arguments": {}}]'
    assert convert({"conversations": [{"from": "system", "value": "S"}, {"from": "human", "value": "q"},
                                      {"from": "function_call", "value": calls},
                                      {"from": "observation", "value": "r"}, {"from": "gpt", "value": "a"}],
                    "tools": '[{"name": "f"}]'}, "sharegpt") == {"messages": [
        {"role": "system", "content": "S"}, {"role": "user", "content": "q"},
        {"role": "assistant", "content": "", "tool_calls": [
            {"type": "function", "function": {"name": "f", "arguments": {"x": 1}}},
            {"type": "function", "function": {"name": "g", "arguments": {}}}]},
        {"role": "tool", "content": "r"}, {"role": "assistant", "content": "a"}], "tools": [{"name": "f"}]}
    lf = {"messages": [{"role": "user", "content": [{"type": "text", "value": "q"}], "loss_weight": 0.0},
                       {"role": "assistant", "content": [{"type": "reasoning", "value": "r"},
                                                         {"type": "text", "value": "a"}], "loss_weight": 1.0}]}
    assert detect_format(lf) == "llamafactory" and convert(lf, "llamafactory") == {"messages": [
        {"role": "user", "content": "q", "loss": False},
        {"role": "assistant", "content": "a", "reasoning_content": "r", "loss": True}]}
    assert detect_format([{"role": "user", "content": "x"}]) == detect_format({"content": "t"}) == "openai"


def test_same_ids_as_llamafactorys_own_qwen3_renderer(llamafactory_data_dir, qwen3_tok):
    """LLaMA-Factory renders its own v1 format for Qwen3 itself (`render_qwen3_messages`, from the same sdist): our
    conversion + the official template gives the same ids. LLaMA-Factory also trains the assistant header and the
    "\\n" after <|im_end|>; ours is the rest of each turn, so a subset of its trained tokens."""
    import sys

    src = str(llamafactory_data_dir.parent / "src")
    sys.path.insert(0, src)
    try:
        from llamafactory.v1.plugins.model_plugins.templates.qwen3 import render_qwen3_messages
    finally:
        sys.path.remove(src)
    for name in ("reason_tool_use_demo_50.jsonl", "v1_sft_demo.jsonl"):
        path = llamafactory_data_dir / name
        tf = build(qwen3_tok, path, template="hf")
        compared = 0
        for i, line in enumerate(path.read_text().splitlines()):
            record = json.loads(line)
            if record.get("tools") == "[]":  # LLaMA-Factory writes an empty tools prompt; the official template none
                continue
            theirs = render_qwen3_messages(qwen3_tok, record["messages"], record.get("tools"))
            ours = tf.sample(i)
            assert ours["input_ids"] == list(theirs["input_ids"]), (name, i + 1)
            trained = {k for k, label in enumerate(ours["labels"]) if label != -100}
            assert trained <= {k for k, label in enumerate(theirs["labels"]) if label != -100}, (name, i + 1)
            compared += 1
        assert compared == {"reason_tool_use_demo_50.jsonl": 48, "v1_sft_demo.jsonl": 500}[name]
