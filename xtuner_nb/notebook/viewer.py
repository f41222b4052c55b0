"""Look at what the model is trained on: tokens with their boundaries and label mask, lengths, pack statistics.

    show_tokens(tokenizer, sample["input_ids"], sample["labels"])           # unshifted labels (-100 = no loss)
    show_tokens(tokenizer, pack["input_ids"], shifted_labels=pack["shifted_labels"], cu_seq_lens=pack["cu_seq_lens"])

Each token is a bordered span whose tooltip gives its id, raw piece and label; trained tokens (label != -100) are
green, masked ones grey; special tokens are bold purple; spaces, tabs and newlines are drawn (· → ↵) so a template
that eats or doubles a newline is visible. Inline styles only, so the HTML renders the same in JupyterLab, VS Code,
Colab and on GitHub.
"""

from __future__ import annotations

import codecs
import html
from dataclasses import asdict, is_dataclass
from typing import Any, Sequence

__all__ = ["Html", "show_tokens", "length_histogram", "pack_stats_table"]

IGNORE = -100
_TRAINED = "background:#d8f5d8;border:1px solid #43a047;color:#1b5e20"
_MASKED = "background:#f2f2f2;border:1px solid #d0d0d0;color:#8a8a8a"
_PLAIN = "background:#fff;border:1px solid #c8c8d8;color:#222"
_SPECIAL = "font-weight:700;color:#6a1b9a"
_WS = "color:#b0b0b0"


class Html(str):
    """A string of HTML that notebooks render (and tests can search as text)."""

    def _repr_html_(self) -> str:
        return str(self)


def _flat(x: Any) -> list[int]:
    if x is None:
        return []
    if hasattr(x, "tolist"):
        x = x.tolist()
    x = list(x)
    if len(x) == 1 and isinstance(x[0], (list, tuple)):  # [1, L] from a pack
        x = list(x[0])
    return [int(v) for v in x]


def _byte_decoder() -> dict[str, int]:
    """GPT-2 byte-level BPE: the printable stand-in character of each byte (Qwen's tokenizers use it too)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {chr(c): b for b, c in zip(bs, cs)}


_BYTES = _byte_decoder()


def _special_ids(tokenizer) -> set[int]:
    ids = set(getattr(tokenizer, "all_special_ids", []) or [])
    for tid, tok in (getattr(tokenizer, "added_tokens_decoder", None) or {}).items():
        if getattr(tok, "special", False):
            ids.add(int(tid))
    return ids


def _token_texts(tokenizer, ids: list[int]) -> list[tuple[str, str]]:
    """(shown text, raw piece) per token. Byte-level pieces are decoded incrementally, so a character split over
    two tokens shows on the token that completes it; the first token shows ▯ (partial UTF-8)."""
    pieces = tokenizer.convert_ids_to_tokens(ids)
    added = {int(k): v.content for k, v in (getattr(tokenizer, "added_tokens_decoder", None) or {}).items()}
    decoder = codecs.getincrementaldecoder("utf-8")("replace")
    out = []
    for tid, piece in zip(ids, pieces):
        piece = piece if piece is not None else ""
        if tid in added:
            decoder.reset()
            out.append((added[tid], piece))
        elif piece and all(ch in _BYTES for ch in piece):
            text = decoder.decode(bytes(_BYTES[ch] for ch in piece))
            out.append((text if text else "▯", piece))
        else:  # sentencepiece-style or unknown: ask the tokenizer
            decoder.reset()
            out.append((tokenizer.decode([tid], skip_special_tokens=False), piece))
    return out


def _visible(text: str) -> str:
    out = []
    for ch in text:
        if ch == " ":
            out.append(f"<span style='{_WS}'>·</span>")
        elif ch == "\t":
            out.append(f"<span style='{_WS}'>→</span>")
        elif ch == "\n":
            out.append(f"<span style='{_WS}'>↵</span><br>")
        elif ch == "\r":
            out.append(f"<span style='{_WS}'>␍</span>")
        else:
            out.append(html.escape(ch))
    return "".join(out)


def show_tokens(tokenizer, input_ids: Any, labels: Any = None, *, shifted_labels: Any = None,
                cu_seq_lens: Any = None, max_tokens: int = 3000, ignore_idx: int = IGNORE) -> Html:
    """HTML of one tokenized sample or pack: token boundaries, trained vs masked tokens, specials, whitespace.

    `labels` are unshifted (label[i] belongs to token i, as the data viewer's samples); pass a pack's
    `shifted_labels` instead (shifted[i] is the target of token i+1). `cu_seq_lens` marks where packed samples start.
    """
    ids = _flat(input_ids)
    if shifted_labels is not None:
        shifted = _flat(shifted_labels)
        if len(shifted) != len(ids):
            raise ValueError(f"shifted_labels has {len(shifted)} entries but input_ids has {len(ids)}")
        labs: list[int] | None = [ignore_idx] + shifted[:-1]
    else:
        labs = _flat(labels) if labels is not None else None
        if labs is not None and len(labs) != len(ids):
            raise ValueError(f"labels has {len(labs)} entries but input_ids has {len(ids)}")
    starts = set(_flat(cu_seq_lens)[:-1]) if cu_seq_lens is not None else set()
    shown = ids[:max_tokens]
    texts = _token_texts(tokenizer, shown)
    special = _special_ids(tokenizer)
    spans = []
    sample = 0
    for i, (tid, (text, piece)) in enumerate(zip(shown, texts)):
        if i in starts and starts != {0}:
            spans.append(f"<span style='display:inline-block;border-left:3px solid #e91e63;margin:0 2px 0 6px;"
                         f"padding-left:3px;color:#e91e63;font-size:0.75em'>sample {sample}</span>")
            sample += 1
        lab = labs[i] if labs is not None else None
        kind = "plain" if lab is None else ("trained" if lab != ignore_idx else "masked")
        style = {"trained": _TRAINED, "masked": _MASKED, "plain": _PLAIN}[kind]
        cls = f"tok {kind}" + (" special" if tid in special else "")
        if tid in special:
            style += f";{_SPECIAL}"
        title = f"#{i} id {tid} · {piece!r}" + ("" if lab is None else f" · label {lab}" + (
            "" if lab in (tid, ignore_idx) else " (≠ id)"))
        spans.append(f"<span class='{cls}' data-id='{tid}' title='{html.escape(title, quote=True)}' "
                     f"style='{style};border-radius:3px;padding:0 1px;margin:1px;white-space:pre-wrap'>"
                     f"{_visible(text)}</span>")
    more = len(ids) - len(shown)
    n_trained = sum(1 for v in (labs or []) if v != ignore_idx)
    head = f"{len(ids)} tokens"
    if labs is not None:
        head += (f" · <span style='{_TRAINED};padding:0 4px'>trained {n_trained}</span>"
                 f" ({n_trained / max(len(ids), 1):.0%})"
                 f" · <span style='{_MASKED};padding:0 4px'>masked {len(ids) - n_trained}</span>")
    if special & set(shown):
        head += f" · <span style='{_SPECIAL}'>special</span>"
    head += f" · <span style='{_WS}'>· space → tab ↵ newline</span>"
    tail = f"<div style='color:#888'>… {more} more tokens not shown (max_tokens={max_tokens})</div>" if more > 0 else ""
    return Html(f"<div style='font-family:monospace;font-size:0.9em;line-height:2'>"
                f"<div style='margin-bottom:4px;color:#444'>{head}</div>{''.join(spans)}{tail}</div>")


def length_histogram(lengths: Sequence[int] | Any, pack_max_length: int | None = None, bins: int = 40,
                     title: str | None = None):
    """Histogram of sample lengths in tokens, with pack_max_length marked and the samples beyond it counted."""
    import numpy as np
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from .plots import _enable_inline_png

    arr = np.asarray(_flat(lengths) if not hasattr(lengths, "shape") else np.asarray(lengths).ravel(), dtype=float)
    _enable_inline_png()
    fig = Figure(figsize=(6.4, 3.0), dpi=90, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    if arr.size:
        ax.hist(arr, bins=bins, color="C0", alpha=0.8)
        stats = (f"{arr.size} samples · median {np.median(arr):.0f} · p95 {np.percentile(arr, 95):.0f} · "
                 f"max {arr.max():.0f}")
    else:
        stats = "no samples"
    if pack_max_length:
        over = int((arr > pack_max_length).sum())
        ax.axvline(pack_max_length, color="C3", ls="--", label=f"pack_max_length = {pack_max_length}")
        ax.legend(fontsize=8)
        if over:
            stats += f" · {over} longer than pack_max_length"
    ax.set_xlabel("tokens per sample")
    ax.set_ylabel("samples")
    ax.set_title(title or stats, fontsize=9)
    ax.grid(alpha=0.3)
    return fig


def _fmt_value(key: str, value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return html.escape(str(value))
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if any(w in key.lower() for w in ("ratio", "fill", "frac", "util", "pct")) and 0 <= value <= 1:
            return f"{value:.1%}"
        return f"{value:,.4g}"
    if isinstance(value, (list, tuple)) and value and all(isinstance(v, dict) for v in value):
        return "".join(pack_stats_table(v) for v in value)
    if isinstance(value, (list, tuple)):
        text = ", ".join(str(v) for v in value[:12]) + (" …" if len(value) > 12 else "")
        return html.escape(f"[{text}]")
    if isinstance(value, dict):
        return pack_stats_table(value)
    return html.escape(str(value))


def pack_stats_table(stats: Any) -> Html:
    """A two-column HTML table of pack statistics (a dict, a dataclass such as `loader.stats`, or `.to_dict()`)."""
    if is_dataclass(stats) and not isinstance(stats, type):
        stats = asdict(stats)
    elif hasattr(stats, "to_dict"):
        stats = stats.to_dict()
    if not isinstance(stats, dict):
        raise TypeError(f"pack_stats_table needs a dict or dataclass, got {type(stats).__name__}")
    rows = "".join(f"<tr><th style='text-align:left;padding:2px 10px 2px 0;vertical-align:top'>"
                   f"{html.escape(str(k))}</th><td style='text-align:right;padding:2px 0'>{_fmt_value(str(k), v)}</td></tr>"
                   for k, v in stats.items())
    return Html(f"<table style='border-collapse:collapse;font-size:0.9em'>{rows}</table>")
