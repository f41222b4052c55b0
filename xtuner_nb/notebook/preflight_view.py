"""The pre-flight report of the data (`trainer.preflight`, or `xtuner_nb.datasets.check_data(config)`) as one HTML
block: the findings, the table per data file, the length histogram against max_length and pack_max_length, and,
when the training template and the tokenizer's own render the data differently, one conversation both ways."""

from __future__ import annotations

import base64
import html
import io
from typing import Any

from .viewer import Html, length_histogram

_COLOURS = {"warning": "#b35900", "note": "#555"}


def show_preflight(report: Any) -> Html:
    """`report`: a `PreflightReport` or a Trainer (its `preflight`)."""
    report = getattr(report, "preflight", report)
    findings = "".join(
        f"<li style='color:{_COLOURS.get(f.severity, '#555')}'><b>{html.escape(f.severity)}</b>: "
        f"{html.escape(f.message)}" + (f"<br><code style='font-size:0.85em'>{html.escape(', '.join(f.examples))}"
                                       "</code>" if f.examples else "") + "</li>" for f in report.findings)
    verdict = (f"{len(report.warnings)} warning(s)" if report.warnings else "no warning") + \
        f" · export template: {report.export_template.describe()} · {report.seconds:.1f} s"
    table = report.table().to_html(index=False, border=0, classes="preflight-table")
    return Html(f"<div class='preflight'><div style='font-weight:700'>Pre-flight check of the data: "
                f"{html.escape(verdict)}</div>" + (f"<ul style='margin:4px 0'>{findings}</ul>" if findings else "")
                + table + _histogram(report) + "".join(_side_by_side(c) for c in report.templates
                                                       if c.example_at) + "</div>")


def _histogram(report) -> str:
    lengths = report.lengths()
    if not len(lengths):
        return ""
    fig = length_histogram(lengths, report.pack_max_length)
    ax = fig.axes[0]
    for k, limit in enumerate(sorted({f.max_length for f in report.files if f.max_length})):
        ax.axvline(limit, color="C1", ls=":", label=f"max_length = {limit}" if k == 0 else None)
    ax.legend(fontsize=8)
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return (f"<img alt='sample lengths' style='max-width:560px' "
            f"src='data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()}'>")


def _side_by_side(c) -> str:
    k = c.first_difference

    def column(title: str, text: str) -> str:
        marked = (html.escape(text[:k]) + "<span style='background:#ffe08a'>" + html.escape(text[k:k + 80])
                  + "</span>" + html.escape(text[k + 80:]))
        return (f"<td style='vertical-align:top;padding:4px 8px;width:50%'><div style='font-weight:700'>"
                f"{html.escape(title)}</div><pre style='white-space:pre-wrap;font-size:0.85em;margin:0'>{marked}"
                "</pre></td>")

    return (f"<div style='margin-top:6px'>{html.escape(c.example_at)}: {c.differing} of {c.compared} "
            f"conversations render differently (highlighted from the first difference)</div>"
            f"<table class='template-difference' style='border-collapse:collapse;width:100%'><tr>"
            f"{column(f'training: chat_template={c.training!r}', c.training_text)}"
            f"{column(_THEIRS, c.tokenizer_text)}</tr></table>")


_THEIRS = "the tokenizer's own chat template"
