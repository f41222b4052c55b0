"""Will it fit? Draws the memory estimate of `xtuner_nb.train.memory` (the formulas and the ways to fit are there)
against a GPU.

    est = estimate_memory(Qwen3Dense8BConfig(), pack_max_length=8192, loss_mode="chunk", world_size=8)
    show_fit(est, "H100")          # or gpu=None: the GPU of this machine (or every known GPU when there is none)
"""

from __future__ import annotations

import html
from dataclasses import fields
from typing import Any

from ..train import memory as _memory
from ..train.memory import GPUS, GiB, measure_budget, planned_budget, ways_to_fit
from .viewer import Html

__all__ = ["MemoryEstimate", "estimate_memory", "show_fit", "GPUS"]

_COLORS = {"weights": "#1e88e5", "gradients": "#43a047", "optimizer": "#fb8c00", "activations": "#8e24aa",
           "logits": "#e53935", "allocator": "#795548", "overhead": "#9e9e9e"}


class MemoryEstimate(_memory.MemoryEstimate):
    """The estimate, drawn by `show_fit` when a notebook cell shows it."""

    def _repr_html_(self) -> str:
        return str(show_fit(self))


def estimate_memory(*args: Any, **kwargs: Any) -> MemoryEstimate:
    est = _memory.estimate_memory(*args, **kwargs)
    return MemoryEstimate(**{f.name: getattr(est, f.name) for f in fields(est)})


estimate_memory.__doc__ = _memory.estimate_memory.__doc__


def _this_gpu():
    try:
        import torch

        if torch.cuda.is_available():
            return measure_budget(torch.device("cuda", torch.cuda.current_device()))
    except Exception:  # no CUDA build, driver trouble: fall back to the table of known GPUs
        return None
    return None


def _ways_html(estimate: MemoryEstimate, budget) -> str:
    ways = ways_to_fit(estimate, budget)
    if not ways:
        return ""
    items = "".join(
        f"<li style='color:{'#2e7d32' if w.fits else '#777'}'>{'✓' if w.fits else '✗'} {html.escape(w.text)}: "
        f"{w.estimate.total / GiB:.1f} GiB</li>" for w in ways)
    return f"<div style='margin-top:4px'>Ways to fit, with their estimates:<ul style='margin:2px 0'>{items}</ul></div>"


def show_fit(estimate: MemoryEstimate, gpu: Any = None) -> Html:
    """A stacked bar and a table of the estimate against a GPU (a name of `GPUS`, GiB, or None: this machine's GPU,
    its free memory; with no GPU here, a fits/does-not-fit line for each known GPU). When it does not fit, the
    ways that would, from `xtuner_nb.train.memory.ways_to_fit`."""
    budget = _this_gpu() if gpu is None else planned_budget(gpu)
    total = estimate.total
    cap = budget.device_bytes if budget else None
    scale = max(total, cap or 0) or 1
    segs = "".join(
        f"<div title='{p}: {v / GiB:.2f} GiB' style='width:{100 * v / scale:.3f}%;background:{_COLORS[p]};"
        f"height:100%;display:inline-block'></div>" for p, v in estimate.parts().items() if v > 0)
    marker = (f"<div style='position:absolute;left:{100 * cap / scale:.3f}%;top:-3px;bottom:-3px;"
              f"border-left:3px solid #000' title='GPU memory'></div>") if cap else ""
    bar = (f"<div style='position:relative;width:520px;height:22px;background:#eee;border:1px solid #ccc;"
           f"white-space:nowrap;font-size:0;margin:6px 0'>{segs}{marker}</div>")
    rows = "".join(
        f"<tr><td><span style='display:inline-block;width:10px;height:10px;background:{_COLORS[p]}'></span> {p}</td>"
        f"<td style='text-align:right;padding-left:12px'>{v / GiB:,.2f} GiB</td>"
        f"<td style='text-align:right;padding-left:12px;color:#777'>{100 * v / max(total, 1):.0f}%</td></tr>"
        for p, v in estimate.parts().items())
    rows += (f"<tr style='border-top:1px solid #999'><td><b>total</b></td>"
             f"<td style='text-align:right;padding-left:12px'><b>{total / GiB:,.2f} GiB</b></td><td></td></tr>")
    i = estimate.inputs
    what = (f"{type(i.get('model_cfg')).__name__}: {estimate.params / 1e9:.3g} B params"
            f"{f', {estimate.trainable / 1e6:.3g} M trainable (LoRA)' if estimate.trainable != estimate.params else ''}"
            f" · pack {i.get('pack_max_length')} × {i.get('micro_batch_size')} · {i.get('param_dtype')} · "
            f"recompute {i.get('recompute_ratio')} · loss {i.get('loss_mode')} · "
            f"{i.get('world_size')} GPU(s){' FSDP' if i.get('fsdp') and i.get('world_size', 1) > 1 else ''}")
    if budget:
        ok = budget.fits(estimate)
        verdict = (f"<b style='color:{'#2e7d32' if ok else '#c62828'}'>{'✓ fits' if ok else '✗ does not fit'}</b> "
                   f"on {html.escape(budget.name)}: {total / GiB:.1f} of {cap / GiB:.1f} GiB "
                   f"({100 * total / cap:.0f}%; {html.escape(budget.what)})")
        if not ok:
            verdict += _ways_html(estimate, budget)
    else:
        verdict = "No GPU here; fits on: " + ", ".join(
            f"<span style='color:{'#2e7d32' if total <= g * GiB else '#c62828'}'>"
            f"{'✓' if total <= g * GiB else '✗'} {html.escape(n)} ({g:g} GiB)</span>" for n, (g, _) in GPUS.items())
    return Html(f"<div style='font-family:sans-serif;font-size:0.9em'><div style='color:#555'>{html.escape(what)}</div>"
                f"{bar}<div>{verdict}</div><table style='border-collapse:collapse;margin-top:4px'>{rows}</table>"
                "<div style='color:#888;font-size:0.85em'>estimate per GPU, all parts added (conservative)"
                "</div></div>")
