"""tools/run_xtuner_tests.py's instruct-style copy of the official Qwen3 tokenizer (for XTuner's
`QWEN3_VL_DENSE_PATH`): assistant turns open without the hybrid template's think block, and nothing else changes."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools"))
from run_xtuner_tests import instruct_tokenizer_dir  # noqa: E402

TOOL_DIALOG = [
    {"role": "system", "content": "sys"},
    {"role": "user", "content": "weather in Paris?"},
    {"role": "assistant", "content": "calling", "reasoning_content": "",
     "tool_calls": [{"type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]},
    {"role": "tool", "content": "22"},
    {"role": "assistant", "content": "22 degrees"},
]
TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "d", "parameters": {}}}]
EMPTY_THINK = "<think>\n\n</think>\n\n"


def test_instruct_copy_drops_only_the_empty_think_block(qwen3_tokenizer_dir, tmp_path):
    from transformers import AutoTokenizer

    hybrid = AutoTokenizer.from_pretrained(qwen3_tokenizer_dir)
    instruct = AutoTokenizer.from_pretrained(instruct_tokenizer_dir(qwen3_tokenizer_dir, tmp_path / "instruct"))
    hybrid_text = hybrid.apply_chat_template(TOOL_DIALOG, tools=TOOLS, tokenize=False)
    instruct_text = instruct.apply_chat_template(TOOL_DIALOG, tools=TOOLS, tokenize=False)
    assert hybrid_text.count(EMPTY_THINK) == 1  # the last assistant turn, after the last user query
    assert EMPTY_THINK not in instruct_text
    assert instruct_text == hybrid_text.replace(EMPTY_THINK, "")
    # a turn that brings its reasoning is not an instruct turn: the copy renders it plainly too
    with_reasoning = [*TOOL_DIALOG[:4], {"role": "assistant", "content": "22 degrees", "reasoning_content": "hot"}]
    assert "<think>" not in instruct.apply_chat_template(with_reasoning, tools=TOOLS, tokenize=False)
    assert instruct.backend_tokenizer.to_str() == hybrid.backend_tokenizer.to_str()
