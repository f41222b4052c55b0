"""The live training dashboard: curves, a progress line and a Stop button, updated in place in the running cell.

A Trainer built inside a Jupyter kernel adds it to every `fit()` by default (the `dashboard` entry point,
`notebook/hooks.py` -> `auto_dashboard`; `TrainerConfig(default_hooks=[])` turns it off). It only observes
the Trainer through the hook events of `xtuner_nb.train.hooks.events` and asks for a stop through `Control`.

Rendering follows what survives JupyterLab, VS Code, Colab, nbmake and GitHub (anchors §5): a PNG and an HTML line
shown once with `display(..., display_id=True)` and replaced with `handle.update(...)`: no `clear_output`, no new
output per step, and the saved notebook keeps the final frame as a static image and HTML.

The Stop button: a synchronous `fit()` keeps the kernel busy, so a click would only arrive after the cell ends
(`docs notebook-pitfalls`). Under `fit()` the button is therefore drawn disabled and the line next to it says how to
stop (interrupt the kernel: the Trainer turns KeyboardInterrupt into a graceful stop). Under `await trainer.afit()`
the loop yields to the event loop between steps, clicks arrive, and the button asks for a graceful stop.

Redraws are throttled by time and by a budget: the figure is redrawn at most every `min_interval` seconds, and only
while the time spent in this hook so far, plus the measured cost of two more frames (this one and the final one),
stays under `max_overhead` (2%) of the wall time since the fit began. An expensive frame (the first one loads fonts) simply delays the next; the
progress line (cheap HTML) keeps moving meanwhile. The final frame is always drawn.
"""

from __future__ import annotations

import html
import time
import weakref
from pathlib import Path
from typing import Any, Callable

from ..train.hooks.events import Control, EndReason, Hook, SaveKind, TrainState
from ..train.logs import in_notebook_kernel
from .eval_view import GENERATIONS_KEY, generations_html
from .plots import CurveData, CurvesFigure, save_curves_png

__all__ = ["LiveDashboard", "auto_dashboard", "save_curves_png", "in_notebook_kernel", "STOP_HINT"]

STOP_HINT = "Interrupt the kernel (■) to stop gracefully — or run `await trainer.afit()` to use this button"
_REASON_TEXT = {"finished": "✓ finished", "stopped": "■ stopped", "interrupted": "■ interrupted (kernel interrupt)",
                "error": "✗ failed"}


def auto_dashboard(trainer: Any) -> "LiveDashboard | None":
    """The dashboard hook of this trainer's fits, or None (not in a kernel, or turned off with show_dashboard)."""
    if not getattr(trainer, "show_dashboard", True) or not in_notebook_kernel():
        return None
    return LiveDashboard(trainer)


_FIGURES: dict[int, CurvesFigure] = {}
_LAST_FRAME_COST: dict[int, float] = {}  # by dpi: what the shared figure's last frame cost (seconds)


def _shared_figure(dpi: int) -> CurvesFigure:
    """One figure per kernel, reused by every fit: a fresh figure's first frame costs several times a redraw (the
    ticks and texts are created then), and a short fit may only ever draw its final frame."""
    if dpi not in _FIGURES:
        _FIGURES[dpi] = CurvesFigure(dpi=dpi)
    return _FIGURES[dpi]


def _ipython_display(obj: Any, display_id: bool = False):
    from IPython.display import display

    return display(obj, display_id=True) if display_id else display(obj)


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


class LiveDashboard(Hook):
    """Hook that draws the run live in the notebook cell that runs `fit()` / `afit()`.

    Args:
        trainer: read for `running_async` (is the Stop button live?), `request_stop` and `exp_dir`; optional.
        min_interval: seconds between figure redraws at the least.
        max_overhead: redraw no more often than keeps drawing time below this fraction of wall time.
        progress_interval: seconds between progress-line updates at the least (cheap HTML).
        live_stop: force the Stop button live (True) or disabled (False); default: `trainer.running_async`.
        display: `display(obj, display_id=False) -> handle` (default IPython's); a handle has `.update(obj)`.
        clock: a monotonic clock (tests pass a fake one).
    """

    main_process_only = True
    FIRST_DRAW_GUESS = 0.2  # seconds a frame is assumed to cost before one was measured in this kernel
    replaces_console_log = True  # the Trainer then keeps per-step log lines off the notebook (warnings stay)

    def __init__(self, trainer: Any = None, *, min_interval: float = 1.0, max_overhead: float = 0.02,
                 progress_interval: float = 0.5, smoothing: float = 0.9, live_stop: bool | None = None,
                 dpi: int = 80, display: Callable[..., Any] | None = None,
                 clock: Callable[[], float] = time.perf_counter):
        # weakly: the button's click handler lives as long as the kernel's widget registry, the Trainer must not
        try:
            self._trainer = weakref.ref(trainer) if trainer is not None else (lambda: None)
        except TypeError:  # an object without weakref support
            self._trainer = lambda: trainer
        self.min_interval, self.max_overhead, self.progress_interval = min_interval, max_overhead, progress_interval
        self.smoothing, self.dpi = smoothing, dpi
        self._live_stop_override = live_stop
        self._display = display or _ipython_display
        self._clock = clock
        self.data = CurveData(smoothing)
        self.figure: CurvesFigure | None = None
        self.last_png: bytes | None = None  # the frame on screen (the final one after on_fit_end)
        self.stats = {"draws": 0, "progress_updates": 0, "draw_seconds": 0.0, "hook_seconds": 0.0}
        self._control: Control | None = None
        self._plot_handle = self._progress_handle = None
        self.button = self.hint = None
        self._state: TrainState | None = None
        self._last_save: tuple[int, str, str] | None = None
        self._end: tuple[str, str | None] | None = None
        self._eval_html = ""
        self._begin, self._begin_step, self._elapsed0 = clock(), 0, 0.0
        self._last_draw = self._last_progress = -float("inf")
        self._draw_cost = self.FIRST_DRAW_GUESS

    @property
    def trainer(self) -> Any:
        return self._trainer()

    # ---- is the Stop button usable? --------------------------------------------------------------------------
    @property
    def live_stop(self) -> bool:
        if self._live_stop_override is not None:
            return self._live_stop_override
        return bool(getattr(self.trainer, "running_async", False))

    def _sync_button(self) -> None:
        if self.button is None or self._end is not None or self.button.description == "stopping…":
            return
        live = self.live_stop
        if live is not self._button_live:  # first call, or afit() began after the button was drawn
            self._button_live = live
            self.button.disabled = not live
            self.button.tooltip = "Stop after this step: save a checkpoint, then afit() returns" if live else STOP_HINT
            self.hint.value = ("" if live else
                               f"<span style='color:#666;font-size:0.85em'>{html.escape(STOP_HINT)}</span>")

    def _on_stop_click(self, _button: Any = None) -> None:
        if self._control is not None:
            self._control.request_stop("Stop button")
        elif hasattr(self.trainer, "request_stop"):
            self.trainer.request_stop()
        if self.button is not None:
            self.button.description, self.button.disabled = "stopping…", True
            self.button.button_style = "warning"

    # ---- events ----------------------------------------------------------------------------------------------
    def on_fit_begin(self, state: TrainState, control: Control) -> None:
        import ipywidgets as W
        from IPython.display import HTML

        t0 = self._clock()
        self._control, self._state, self._end = control, state, None
        self._begin = t0
        self._begin_step, self._elapsed0 = state.step, state.elapsed or 0.0
        self._last_draw = self._last_progress = -float("inf")
        self._draw_cost = _LAST_FRAME_COST.get(self.dpi, self.FIRST_DRAW_GUESS)
        self.stats = {"draws": 0, "progress_updates": 0, "draw_seconds": 0.0, "hook_seconds": 0.0}
        self.data = CurveData(self.smoothing)
        for row in state.history:  # a resumed or continued run shows its whole curve
            self.data.add(row)
        self.button = W.Button(description="Stop", icon="stop", button_style="danger", disabled=True,
                               layout=W.Layout(width="90px"))
        self.button.on_click(self._on_stop_click)
        self.hint = W.HTML()
        self._button_live: bool | None = None
        self._sync_button()
        self._display(W.HBox([self.button, self.hint], layout=W.Layout(align_items="center")))
        self._progress_handle = self._display(HTML(self._progress_html(state)), display_id=True)
        self._plot_handle = self._display(HTML("<i style='color:#888'>curves appear after a few seconds of training…</i>"),
                                          display_id=True)
        self.stats["hook_seconds"] += self._clock() - t0

    def on_step_end(self, state: TrainState, metrics: dict[str, Any], control: Control) -> None:
        t0 = self._clock()
        self._control, self._state = control, state
        self.data.add(metrics, state.step)
        self._sync_button()
        if t0 - self._last_progress >= self.progress_interval:
            self._update_progress(state, t0)
        if self._draw_due(t0):
            self._draw(state, t0)
        self.stats["hook_seconds"] += self._clock() - t0

    def on_eval_end(self, state: TrainState, metrics: dict[str, Any], control: Control) -> None:
        t0 = self._clock()
        self._control, self._state = control, state
        self.data.add(metrics, state.step)  # the eval loss joins the curves at the next redraw
        if metrics.get(GENERATIONS_KEY):  # the generation checks, under the progress line, right away
            self._eval_html = generations_html({"step": state.step, **metrics})
            self._update_progress(state, t0)
        self.stats["hook_seconds"] += self._clock() - t0

    def on_save(self, state: TrainState, path: Path, kind: SaveKind, control: Control) -> None:
        self._last_save = (state.step, kind, str(path))

    def on_fit_end(self, state: TrainState, reason: EndReason, control: Control) -> None:
        t0 = self._clock()
        self._state = state
        why = control.stop_reason if reason == "stopped" else None
        self._end = (reason, why)
        if self.button is not None:
            self.button.on_click(self._on_stop_click, remove=True)
            self.button.disabled = True
            self.button.description = {"finished": "Done", "stopped": "Stopped"}.get(reason, "Ended")
            self.button.button_style = "" if reason == "finished" else "warning"
            self.button.tooltip = f"fit ended: {reason}"
            self.hint.value = ""
        # the frame first: a viewer (or a test) that sees the final progress line then also has the final frame
        if self.data.cols or self._plot_handle is not None:
            self._draw(state, t0, final=True)
        self._update_progress(state, t0)
        self.stats["hook_seconds"] += self._clock() - t0

    # ---- throttling ------------------------------------------------------------------------------------------
    def _draw_due(self, now: float) -> bool:
        if now - self._last_draw < self.min_interval:
            return False
        budget = self.max_overhead * (now - self._begin)
        # this frame, and one more kept in reserve for the final frame that on_fit_end always draws
        return self.stats["hook_seconds"] + 2 * self._draw_cost <= budget

    @property
    def overhead(self) -> float:
        """Fraction of wall time since on_fit_begin spent inside this hook."""
        wall = self._clock() - self._begin
        return self.stats["hook_seconds"] / wall if wall > 0 else 0.0

    # ---- drawing ---------------------------------------------------------------------------------------------
    def _draw(self, state: TrainState, now: float, final: bool = False) -> None:
        from IPython.display import Image

        t0 = self._clock()
        if self.figure is None:
            self.figure = _shared_figure(self.dpi)
        self.figure.draw(self.data, self._title(state))
        self.last_png = self.figure.png()
        image = Image(data=self.last_png, format="png")
        if self._plot_handle is not None:
            self._plot_handle.update(image)
        cost = self._clock() - t0
        self._draw_cost = _LAST_FRAME_COST[self.dpi] = cost
        self.stats["draws"] += 1
        self.stats["draw_seconds"] += cost
        self._last_draw = self._clock()

    def _title(self, state: TrainState) -> str:
        name = Path(state.exp_dir).name if state.exp_dir else ""
        return f"{name}  step {state.step}/{state.total_step or '?'}".strip()

    def _update_progress(self, state: TrainState, now: float) -> None:
        from IPython.display import HTML

        if self._progress_handle is not None:
            self._progress_handle.update(HTML(self._progress_html(state)))
        self.stats["progress_updates"] += 1
        self._last_progress = now

    def _progress_html(self, state: TrainState) -> str:
        step, total = state.step, state.total_step or 0
        row = self.data.last
        # state.elapsed may only count earlier sessions until the fit ends: add this session's clock
        elapsed = max(state.elapsed or 0.0, self._elapsed0 + self._clock() - self._begin)
        eta = row.get("time/eta_seconds")
        if eta is None and total and step > self._begin_step:
            eta = (self._clock() - self._begin) / (step - self._begin_step) * (total - step)
        parts = [f"step <b>{step}</b>/{total or '?'}" + (f" ({100 * step / total:.0f}%)" if total else "")]
        parts.append(f"elapsed {_fmt_time(elapsed)}")
        if self._end is None:
            parts.append(f"ETA {_fmt_time(eta)}")
        loss = next((row.get(k) for k in ("loss/reduced_llm_loss", "loss/local_loss", "loss") if k in row), None)
        if _fmt(loss, ".4f"):
            smooth = _fmt(self.data.smoothed_loss, ".4f")
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
        ev = self.data.last_eval
        if ev is not None and _fmt(ev.get("eval/loss"), ".4f"):
            parts.append(f"eval loss {_fmt(ev.get('eval/loss'), '.4f')} @ {ev.get('step', '?')}")
        if self._last_save is not None:
            s_step, kind, path = self._last_save
            parts.append(f"saved {kind} @ step {s_step}: <code>{html.escape(path)}</code>")
        head = ""
        if self._end is not None:
            reason, why = self._end
            head = f"<b>{_REASON_TEXT.get(reason, reason)}</b>" + (f" ({html.escape(why)})" if why else "") + " · "
        bar = (f"<progress value='{step}' max='{total}' style='width:220px;vertical-align:middle'></progress> "
               if total else "")
        evals = f"<div style='margin-top:4px'>{self._eval_html}</div>" if self._eval_html else ""
        return (f"<div style='font-family:monospace;font-size:0.9em;line-height:1.5'>{bar}{head}"
                + " · ".join(parts) + f"</div>{evals}")
