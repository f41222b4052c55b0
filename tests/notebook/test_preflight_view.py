"""show_preflight draws the pre-flight report: the findings with their file:line, the table, the length histogram and
the training template next to the tokenizer's own where they differ."""

from __future__ import annotations

from tests.datasets.conftest import chat, loader_cfg, write_jsonl


def test_the_report_as_html(tmp_path, qwen3_tokenizer_dir):
    from transformers import AutoTokenizer

    from xtuner_nb.datasets import check_data
    from xtuner_nb.notebook import show_preflight

    tok = AutoTokenizer.from_pretrained(qwen3_tokenizer_dir)
    data = write_jsonl(tmp_path / "d.jsonl", [chat("Hi", "Hello!"), chat("Hi", "Hello!"), chat("2+2?", "4")])
    page = show_preflight(check_data(loader_cfg(data, pack_max_length=64), tok))
    assert "Pre-flight check of the data: 1 warning(s)" in page
    assert f"{data}:2 (= {data}:1)" in page  # the duplicate, with where it repeats from
    assert "<table" in page and "preflight-table" in page and "data:image/png;base64," in page
    assert "training: chat_template=&#x27;qwen3&#x27;" in page and "the tokenizer&#x27;s own chat template" in page
    assert "&lt;think&gt;" in page  # Qwen3's own template writes an empty think block into the answer
