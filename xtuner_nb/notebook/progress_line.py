"""The dashboard's progress line: the step, elapsed time and ETA, the latest metrics, the eval answers, how it ended.

Plain HTML (cheap to send every half second, and kept as is in a saved notebook).
"""

from __future__ import annotations

import html
from typing import Any

from ..train.hooks.events import TrainState
from .plots import LOSS_KEYS, CurveData

_REASON_TEXT = {"finished": "✓ finished", "stopped": "■ stopped", "interrupted": "■ interrupted (kernel interrupt)",
                "error": "✗ failed"}


def _fmt_time(seconds: float | None) -> str:
    if seconds is None or seconds != seconds or seconds < 0:
        return "–"
    seconds = int(round(seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}"


def _fmt(value: Any, spec: str) -> str | None:
    try:
        return format(float(value), spec)
    except (TypeError, ValueError):
        return None


def progress_html(state: TrainState, data: CurveData, elapsed: float, eta: float | None,
                  end: tuple[str, str | None] | None, last_save: tuple[int, str, str] | None, eval_html: str) -> str:
    """The line for `state` and the curves' `data`; `end` is (reason, why) once the fit ended, `last_save` is
    (step, kind, path) of the latest save, `eval_html` the latest generation checks."""
    step, total = state.step, state.total_step or 0
    row = data.last
    parts = [f"step <b>{step}</b>/{total or '?'}" + (f" ({100 * step / total:.0f}%)" if total else "")]
    parts.append(f"elapsed {_fmt_time(elapsed)}")
    if end is None:
        parts.append(f"ETA {_fmt_time(eta)}")
    loss = next((row.get(k) for k in ("loss/reduced_llm_loss", "loss/local_loss", "loss") if k in row), None)
    if _fmt(loss, ".4f"):
        smooth = _fmt(data.smoothed_loss, ".4f")
        parts.append(f"loss <b>{_fmt(loss, '.4f')}</b>" + (f" (smoothed {smooth})" if smooth else ""))
    if _fmt(row.get("lr"), ".2e"):
        parts.append(f"lr {_fmt(row.get('lr'), '.2e')}")
    if _fmt(row.get("grad_norm"), ".3f"):
        parts.append(f"grad norm {_fmt(row.get('grad_norm'), '.3f')}")
    if _fmt(row.get("runtime_info/tgs"), ",.0f"):
        parts.append(f"{_fmt(row.get('runtime_info/tgs'), ',.0f')} tok/s per device")
    if _fmt(row.get("memory/max_memory_GB"), ".1f"):
        parts.append(f"peak {_fmt(row.get('memory/max_memory_GB'), '.1f')} GB")
    if state.attention_backend or state.precision:
        parts.append(html.escape(f"{state.precision or ''} attention {state.attention_backend or '-'}".strip()))
    ev = data.last_eval
    if ev is not None and _fmt(ev.get("eval/loss"), ".4f"):
        parts.append(f"eval loss {_fmt(ev.get('eval/loss'), '.4f')} @ {ev.get('step', '?')}")
    if last_save is not None:
        s_step, kind, path = last_save
        parts.append(f"saved {kind} @ step {s_step}: <code>{html.escape(path)}</code>")
    ranks = _ranks_html(row)
    head = ""
    if end is not None:
        reason, why = end
        head = f"<b>{_REASON_TEXT.get(reason, reason)}</b>" + (f" ({html.escape(why)})" if why else "") + " · "
    bar = (f"<progress value='{step}' max='{total}' style='width:220px;vertical-align:middle'></progress> "
           if total else "")
    evals = f"<div style='margin-top:4px'>{eval_html}</div>" if eval_html else ""
    return (f"<div style='font-family:monospace;font-size:0.9em;line-height:1.5'>{bar}{head}"
            + " · ".join(parts) + f"</div>{ranks}{evals}")


def _ranks_html(row: dict[str, Any]) -> str:
    """A run launched on several processes (`launch()`): each rank's tokens/s and peak memory, on a line."""
    speeds, memory = row.get("ranks/tokens_per_s"), row.get("ranks/memory_GB")
    if not isinstance(speeds, list) or len(speeds) < 2:
        return ""
    memory = memory if isinstance(memory, list) else [None] * len(speeds)
    cells = [f"rank {r}: {_fmt(s, ',.0f') or '–'} tok/s, {_fmt(m, '.2f') or '–'} GB"
             for r, (s, m) in enumerate(zip(speeds, memory))]
    return ("<div class='xtuner-ranks' style='font-family:monospace;font-size:0.85em;color:#444'>"
            + " · ".join(cells) + "</div>")
