"""Data viewer HTML and the memory fit as a notebook draws it."""

import re

import pytest
import torch

from xtuner_nb.model import Qwen3Dense8BConfig, Qwen3DenseTinyConfig
from xtuner_nb.model.tokenizer import make_tiny_tokenizer
from xtuner_nb.notebook.memory import estimate_memory, show_fit
from xtuner_nb.train.memory import planned_budget, ways_to_fit
from xtuner_nb.notebook.viewer import length_histogram, pack_stats_table, show_tokens


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
    return make_tiny_tokenizer(tmp_path_factory.mktemp("tok"))


def _chat_sample(tok):
    msgs = [{"role": "user", "content": "你好 world\n\tx"}, {"role": "assistant", "content": "Hi 🙂!"}]
    out = tok.apply_chat_template(msgs, tokenize=True, return_dict=True, return_assistant_tokens_mask=True)
    ids = out["input_ids"]
    labels = [i if m else -100 for i, m in zip(ids, out["assistant_masks"])]
    return ids, labels


def _spans(html_text):
    return re.findall(r"<span class='tok (\w+)( special)?' data-id='(\d+)'", html_text)


def test_show_tokens_marks_trained_masked_special_and_whitespace(tok):
    ids, labels = _chat_sample(tok)
    out = show_tokens(tok, torch.tensor([ids]), torch.tensor(labels))  # [1, L] tensors are fine
    spans = _spans(out)
    assert [int(i) for _, _, i in spans] == ids  # one span per token, in order
    assert [k for k, _, _ in spans] == ["trained" if lab != -100 else "masked" for lab in labels]
    trained_ids = [int(i) for k, _, i in spans if k == "trained"]
    assert tok.decode(trained_ids) == "Hi 🙂!<|im_end|>"  # exactly the assistant reply + end token
    specials = [int(i) for _, s, i in spans if s]
    assert specials and all(tok.convert_ids_to_tokens(i) in ("<|im_start|>", "<|im_end|>") for i in specials)
    assert "↵" in out and "→" in out and "·" in out  # newline, tab, space made visible
    assert "你好" in out and "🙂" in out  # multi-byte characters reassembled
    assert f"trained {sum(l != -100 for l in labels)}" in out
    assert "title='#0 id 1 · " in out  # the tooltip gives position and id


def test_show_tokens_with_shifted_labels_and_pack_boundaries(tok):
    ids, labels = _chat_sample(tok)
    shifted = labels[1:] + [-100]
    packed = show_tokens(tok, ids + ids, shifted_labels=shifted + shifted, cu_seq_lens=[0, len(ids), 2 * len(ids)])
    assert [k for k, _, _ in _spans(packed)] == ["trained" if l != -100 else "masked" for l in labels + labels]
    assert "sample 0" in packed and "sample 1" in packed
    with pytest.raises(ValueError, match="labels has 3 entries but input_ids has"):
        show_tokens(tok, ids, [1, 2, 3])
    short = show_tokens(tok, ids, labels, max_tokens=5)
    assert len(_spans(short)) == 5 and f"{len(ids) - 5} more tokens" in short


def test_length_histogram_and_pack_stats():
    fig = length_histogram([10, 20, 30, 5000], pack_max_length=4096)
    ax = fig.axes[0]
    assert "1 longer than pack_max_length" in ax.get_title()
    assert ax.get_legend().get_texts()[0].get_text() == "pack_max_length = 4096"
    table = pack_stats_table({"samples": 12345, "fill_ratio": 0.9312, "pack_level": "soft",
                              "datasets": [{"name": "demo", "tokens": 999}]})
    assert "12,345" in table and "93.1%" in table and "soft" in table and "demo" in table


# ---- the memory fit, drawn (the arithmetic: tests/train/test_memory_estimate.py) -------------------------
def test_show_fit_verdicts_and_ways_to_fit():
    cfg = Qwen3Dense8BConfig()
    e = estimate_memory(cfg, 8192, loss_mode="eager", recompute_ratio=0.0)
    out = show_fit(e, "H100")
    assert "does not fit" in out and "H100 80GB" in out and "mode=&#x27;chunk&#x27;" in out
    assert "✓ fits" in show_fit(estimate_memory(Qwen3DenseTinyConfig(), 2048), "T4")
    assert "✓ fits" in show_fit(estimate_memory(Qwen3DenseTinyConfig(), 2048), 2)  # 2 GiB
    texts = [w.text for w in ways_to_fit(e, planned_budget("H100"))]  # the list show_fit draws
    assert any("chunk" in t for t in texts) and any("recompute_ratio=1.0" in t for t in texts)
    assert all(f"{w.text}: {w.estimate.total / 2**30:.1f} GiB".replace("'", "&#x27;") in out
               for w in ways_to_fit(e, planned_budget("H100")))
    with pytest.raises(ValueError, match="unknown GPU"):
        show_fit(e, "K80")
    if not torch.cuda.is_available():
        assert "No GPU here" in show_fit(e)
