"""The generation checks of an eval as a small table: prompt, answer, expected, right or wrong.

`source` is an eval metrics row (what `on_eval_end` gets and `trainer.evaluate()` returns), its
`eval/generations` list, a `Trainer`, or a history `DataFrame` / list of tracker rows (the latest eval with
generations is shown). Plain pandas and HTML: the dashboard can embed `generations_html(row)` in its frame.
"""

from __future__ import annotations

import html
from typing import Any

GENERATIONS_KEY = "eval/generations"


def latest_generations(source: Any) -> tuple[int | None, list[dict[str, Any]]]:
    """(step, generations) of the latest eval in `source` that has generations; (None, []) when there is none."""
    if hasattr(source, "rows"):  # a Trainer: its raw rows (eval rows apart from training rows)
        source = source.rows
    if hasattr(source, "to_dict") and hasattr(source, "columns"):  # a DataFrame
        source = source.to_dict("records")
    if isinstance(source, dict):
        return source.get("step"), list(source.get(GENERATIONS_KEY) or [])
    rows = list(source or [])
    if rows and isinstance(rows[0], dict) and "answer" in rows[0]:
        return None, rows  # already a list of generations
    for row in reversed(rows):
        gens = row.get(GENERATIONS_KEY) if isinstance(row, dict) else None
        if isinstance(gens, list) and gens:
            return row.get("step"), gens
    return None, []


def generations_frame(source: Any):
    """A pandas DataFrame with columns prompt, answer, expected, correct (✓ / ✗ / blank when not scored)."""
    import pandas as pd

    _, gens = latest_generations(source)
    mark = {True: "✓", False: "✗", None: ""}
    return pd.DataFrame([{"prompt": g.get("prompt", ""), "answer": g.get("answer", ""),
                          "expected": g.get("expected") or "", "correct": mark.get(g.get("correct"), "")}
                         for g in gens], columns=["prompt", "answer", "expected", "correct"])


def generations_html(source: Any, max_chars: int = 80) -> str:
    """A compact HTML table (escaped, long texts cut to `max_chars`) with the step and the score in its caption."""
    step, gens = latest_generations(source)
    if not gens:
        return "<i style='color:#888'>no generation checks yet</i>"

    def cell(text: Any) -> str:
        s = "" if text is None else str(text)
        return html.escape(s if len(s) <= max_chars else s[: max_chars - 1] + "…")

    scored = [g for g in gens if g.get("correct") is not None]
    right = sum(bool(g["correct"]) for g in scored)
    caption = (f"answers at step {step}" if step is not None else "answers") + \
        (f": {right}/{len(scored)} right" if scored else "")
    colour = {True: "#1a7f37", False: "#cf222e"}
    rows = "".join(
        f"<tr><td>{cell(g.get('prompt'))}</td><td>{cell(g.get('answer'))}</td><td>{cell(g.get('expected'))}</td>"
        f"<td style='color:{colour.get(g.get('correct'), '#888')}'>"
        f"{ {True: '✓', False: '✗'}.get(g.get('correct'), '') }</td></tr>" for g in gens)
    return (f"<table style='font-size:12px;border-collapse:collapse'><caption style='text-align:left'>"
            f"{html.escape(caption)}</caption><tr><th>prompt</th><th>answer</th><th>expected</th><th></th></tr>"
            f"{rows}</table>")
