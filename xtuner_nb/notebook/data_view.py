"""The data viewer: what a dataset became before training on it.

    show_dataset(dataloader_cfg, tokenizer)          # or one {"dataset": ..., "tokenize_fn": ...} entry
    compare_templates(tokenizer, conversation)      # "qwen3" and "hf" renderings side by side

For each file: the format it was read in (detected or chosen), the chat template, the share of trained tokens, the
conversations that were truncated to max_length or lost content to the template (e.g. reasoning that XTuner's qwen3
template does not render), skipped bad lines, then the first samples drawn token by token (`show_tokens`).
"""

from __future__ import annotations

import html

from .viewer import Html, show_tokens

_WARN = "background:#fff3e0;border:1px solid #fb8c00;color:#e65100;padding:0 4px;border-radius:3px"


def _lines(items: list[int], unit: str, limit: int = 12) -> str:
    shown = ", ".join(str(i) for i in items[:limit]) + (" …" if len(items) > limit else "")
    return f"{unit}s {shown}" if items else ""


def show_dataset(dataloader_cfg, tokenizer, n: int = 3, dataset_index: int = 0, max_tokens: int = 800) -> Html:
    """HTML summary of one dataset entry (format, template, trained share, truncated and dropped) and its first
    `n` samples."""
    from ..datasets.preview import summarize_dataset

    parts = []
    for f in summarize_dataset(dataloader_cfg, tokenizer, n=n, dataset_index=dataset_index):
        dropped_lines = sorted({no for no, _ in f.dropped_lines})
        what = ", ".join("tool schemas" if k == "tools" else f"{k} of {v} assistant turn{'s' if v > 1 else ''}"
                         for k, v in f.dropped.items())
        rows = [("file", html.escape(f.path)), ("format", html.escape(f.data_format)),
                ("chat template", html.escape(f.chat_template or "(none: the tokenize function's own)")),
                ("conversations", f"{f.samples:,}"),
                ("trained tokens", f"{f.trained_tokens:,} of {f.tokens:,} ({f.trained_share:.1%})"),
                ("truncated to max_length", f"{len(f.truncated_lines):,}" + (
                    f" ({_lines(f.truncated_lines, f.unit)})" if f.truncated_lines else "")),
                ("content not rendered", (f"<span style='{_WARN}'>{len(dropped_lines):,} conversations: "
                                          f"{html.escape(what)} ({_lines(dropped_lines, f.unit)})</span>")
                 if dropped_lines else "0")]
        if f.skipped:
            rows.append(("bad lines skipped", f"{len(f.skipped):,} ({_lines([s[0] for s in f.skipped], f.unit)})"))
        table = "".join(f"<tr><th style='text-align:left;padding:2px 12px 2px 0'>{k}</th><td>{v}</td></tr>"
                        for k, v in rows)
        parts.append(f"<table class='dataset-summary' style='border-collapse:collapse;font-size:0.9em;"
                     f"margin-bottom:6px'>{table}</table>")
        for s in f.samples_shown:
            notes = (["truncated"] if s["truncated"] else []) + s["dropped"]
            badge = "".join(f" <span style='{_WARN}'>{html.escape(x)}</span>" for x in notes)
            parts.append(f"<div style='margin:8px 0 2px;color:#444'>{f.unit} {s['line']}{badge}</div>")
            parts.append(show_tokens(tokenizer, s["input_ids"], s["labels"], max_tokens=max_tokens))
    return Html("<div>" + "".join(parts) + "</div>")


def compare_templates(tokenizer, conversation, templates=("qwen3", "hf")) -> Html:
    """The same conversation rendered by several chat templates, side by side: one column per template, the
    trained text highlighted, and under it what the template left out (e.g. reasoning) and the token counts."""
    from ..datasets import OpenaiTokenizeFunctionConfig, label_spans

    columns = []
    for name in templates:
        out = OpenaiTokenizeFunctionConfig(chat_template=name).build(tokenizer)(conversation)
        spans = "".join(f"<span style='{_TRAINED if trained else _MASKED}'>{html.escape(text)}</span>"
                        for text, trained in label_spans(tokenizer, out["input_ids"], out["labels"]))
        trained = sum(1 for v in out["labels"] if v != -100)
        dropped = ", ".join(f"{k} of {v} turn(s)" if k != "tools" else "tool schemas"
                            for k, v in out.get("dropped", {}).items())
        foot = f"{len(out['input_ids'])} tokens, {trained} trained" + (
            f" · <span style='{_WARN}'>not rendered: {html.escape(dropped)}</span>" if dropped else "")
        columns.append(f"<td style='vertical-align:top;padding:4px 8px;width:{100 // len(templates)}%'>"
                       f"<div style='font-weight:700;margin-bottom:4px'>chat_template=\"{html.escape(name)}\"</div>"
                       f"<pre style='white-space:pre-wrap;font-size:0.85em;margin:0'>{spans}</pre>"
                       f"<div style='color:#444;margin-top:4px'>{foot}</div></td>")
    return Html(f"<table class='template-comparison' style='border-collapse:collapse;width:100%'>"
                f"<tr>{''.join(columns)}</tr></table>")


_TRAINED = "background:#d8f5d8;color:#1b5e20"
_MASKED = "color:#8a8a8a"
