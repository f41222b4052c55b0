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

When frames are drawn:
- the one-off costs come first, when the dashboard is made (the Trainer makes its hooks first thing in `__init__`,
  before the data is tokenized): matplotlib's fonts, the figure, the PNG encoder; then one frame of each kind is
  timed, so the budget starts from measured costs, not from a guess (`frames.LiveFrames.warm_up`);
- the first frame of a fit comes after `first_frame_steps` steps, as soon as the budget below pays for it, and at the
  latest once `first_frame_seconds` of training have passed too, whatever the run's length;
- later frames come at most every `min_interval` seconds, while the time spent in this hook so far, plus the measured
  cost of this frame (its kind: axes or lines, see `frames.py`) and of the final one, stays under `max_overhead` (2%)
  of the fit's wall time. The wall time counted is the time so far plus what the ETA says is left, at most as much
  again: a short run may spend its budget early instead of leaving its first half without frames, and a finished
  run still ends within it. Until a fit has drawn `live_frames` frames (5), in a run of at least 20 steps, the share
  allowed is `live_frames_overhead` (5%) instead: the quickstart on a busy CPU (at a load of 15: a 175 s fit, axes
  frames of 2 s) cannot otherwise afford a frame between its first and its last, while the real-model notebook
  (9 steps of 16 s) keeps to 2%. The progress line (cheap HTML) keeps moving between frames;
- the final frame is always drawn.
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
from .frames import LiveFrames
from .plots import CurveData, save_curves_png
from .progress_line import progress_html

__all__ = ["LiveDashboard", "auto_dashboard", "save_curves_png", "in_notebook_kernel", "STOP_HINT"]

STOP_HINT = "Interrupt the kernel (■) to stop gracefully — or run `await trainer.afit()` to use this button"

def auto_dashboard(trainer: Any) -> "LiveDashboard | None":
    """The dashboard hook of this trainer's fits, or None (not in a kernel, or turned off with show_dashboard)."""
    if not getattr(trainer, "show_dashboard", True) or not in_notebook_kernel():
        return None
    return LiveDashboard(trainer)


_FRAMES: dict[int, LiveFrames] = {}  # by dpi: one figure per kernel, reused by every fit (made and warmed up once)
_FRAME_COSTS: dict[int, dict[str, float]] = {}  # by dpi: what the latest frame of each kind cost (seconds)


def _shared_frames(dpi: int, clock: Callable[[], float]) -> LiveFrames:
    """The kernel's frames of this dpi, warmed up, with their costs measured once (again after the costs are
    forgotten, as a test's fresh kernel does)."""
    if dpi not in _FRAMES:
        _FRAMES[dpi] = LiveFrames(dpi=dpi).warm_up()
    if dpi not in _FRAME_COSTS:
        _FRAME_COSTS[dpi] = _FRAMES[dpi].measure(clock)
    return _FRAMES[dpi]


def _fresh_stats() -> dict[str, Any]:
    """What a fit's dashboard did: frames drawn (of which with the axes), progress updates, seconds spent drawing
    and in the hook; `fit_seconds` (the fit's wall time as the hook saw it) is added when the fit ends."""
    return {"draws": 0, "axes_draws": 0, "progress_updates": 0, "draw_seconds": 0.0, "hook_seconds": 0.0}


def _ipython_display(obj: Any, display_id: bool = False):
    from IPython.display import display

    return display(obj, display_id=True) if display_id else display(obj)


class LiveDashboard(Hook):
    """Hook that draws the run live in the notebook cell that runs `fit()` / `afit()`.

    Args:
        trainer: read for `running_async` (is the Stop button live?), `request_stop` and `exp_dir`; optional.
        min_interval: seconds between figure redraws at the least.
        max_overhead: redraw no more often than keeps the time in this hook below this fraction of wall time.
        live_frames, live_frames_overhead: until a fit has drawn `live_frames` frames, the fraction is
            `live_frames_overhead` if that is larger.
        first_frame_steps, first_frame_seconds: the first frame comes once both have passed in a fit, or sooner (but
            not before `first_frame_steps`) when the budget pays for it.
        progress_interval: seconds between progress-line updates at the least (cheap HTML).
        live_stop: force the Stop button live (True) or disabled (False); default: `trainer.running_async`.
        display: `display(obj, display_id=False) -> handle` (default IPython's); a handle has `.update(obj)`.
        clock: a monotonic clock (tests pass a fake one).
    """

    main_process_only = True
    replaces_console_log = True  # the Trainer then keeps per-step log lines off the notebook (warnings stay)

    def __init__(self, trainer: Any = None, *, min_interval: float = 1.0, max_overhead: float = 0.02,
                 live_frames: int = 5, live_frames_overhead: float = 0.05,
                 first_frame_steps: int = 2, first_frame_seconds: float = 2.0,
                 progress_interval: float = 0.5, smoothing: float = 0.9, live_stop: bool | None = None,
                 dpi: int = 80, display: Callable[..., Any] | None = None,
                 clock: Callable[[], float] = time.perf_counter):
        # weakly: the button's click handler lives as long as the kernel's widget registry, the Trainer must not
        try:
            self._trainer = weakref.ref(trainer) if trainer is not None else (lambda: None)
        except TypeError:  # an object without weakref support
            self._trainer = lambda: trainer
        self.min_interval, self.max_overhead, self.progress_interval = min_interval, max_overhead, progress_interval
        self.live_frames, self.live_frames_overhead = live_frames, live_frames_overhead
        self.first_frame_steps, self.first_frame_seconds = first_frame_steps, first_frame_seconds
        self.smoothing, self.dpi = smoothing, dpi
        self._live_stop_override = live_stop
        self._display = display or _ipython_display
        self._clock = clock
        self.data = CurveData(smoothing)
        # the one-off costs, paid now rather than during the fit: the widgets' and the display's imports, the figure
        import ipywidgets  # noqa: F401
        from IPython.display import HTML, Image  # noqa: F401

        self.frames = _shared_frames(dpi, clock)
        self.last_png: bytes | None = None  # the frame on screen (the final one after on_fit_end)
        self.stats = _fresh_stats()
        self._control: Control | None = None
        self._plot_handle = self._progress_handle = None
        self.button = self.hint = None
        self._state: TrainState | None = None
        self._last_save: tuple[int, str, str] | None = None
        self._end: tuple[str, str | None] | None = None
        self._eval_html = ""
        self._begin, self._begin_step, self._elapsed0 = clock(), 0, 0.0
        self._last_draw = self._last_progress = -float("inf")

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
        self.frames.reset()
        self.stats = _fresh_stats()
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
        self._plot_handle = self._display(HTML("<i style='color:#888'>the curves appear after the first steps…</i>"),
                                          display_id=True)
        self.stats["hook_seconds"] += self._clock() - t0

    def on_step_end(self, state: TrainState, metrics: dict[str, Any], control: Control) -> None:
        t0 = self._clock()
        self._control, self._state = control, state
        self.data.add(metrics, state.step)
        self._sync_button()
        if t0 - self._last_progress >= self.progress_interval:
            self._update_progress(state, t0)
        if self._draw_due(t0, state):
            self._draw(state)
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
            self._draw(state, final=True)
        self._update_progress(state, t0)
        end = self._clock()
        self.stats["hook_seconds"] += end - t0
        self.stats["fit_seconds"] = end - self._begin

    # ---- throttling ------------------------------------------------------------------------------------------
    def _draw_due(self, now: float, state: TrainState) -> bool:
        if self.stats["draws"] == 0:  # the first frame: as soon as the budget pays for it, and early in every run
            if state.step - self._begin_step < self.first_frame_steps:
                return False
            return now - self._begin >= self.first_frame_seconds or self._affordable(now, state)
        return now - self._last_draw >= self.min_interval and self._affordable(now, state)

    def _affordable(self, now: float, state: TrainState) -> bool:
        costs = _FRAME_COSTS[self.dpi]
        this = costs["axes" if self.frames.axes_due(self.data, state.total_step) else "lines"]
        # this frame, and the final one that on_fit_end always draws (usually a lines frame)
        spent = self.stats["hook_seconds"] + this + costs["lines"]
        return spent <= self._share(state) * self._budget_wall(now, state)

    def _share(self, state: TrainState) -> float:
        """`live_frames_overhead` until `live_frames` frames are drawn in a run of many steps (at least 4 a frame: the
        quickstart's 120), then `max_overhead`. A run of few long steps (the real-model notebook: 9 of 16 s) keeps to
        `max_overhead` from the start: its progress line moves every step, and a frame adds one point to each curve."""
        many_steps = (state.total_step or 0) - self._begin_step >= 4 * self.live_frames
        if many_steps and self.stats["draws"] < self.live_frames:
            return max(self.max_overhead, self.live_frames_overhead)
        return self.max_overhead

    def _budget_wall(self, now: float, state: TrainState) -> float:
        """The fit's wall time so far, plus the time the ETA says is left, at most as much again."""
        elapsed, done = now - self._begin, state.step - self._begin_step
        left = elapsed / done * ((state.total_step or 0) - state.step) if done > 0 else 0.0
        return elapsed + min(max(left, 0.0), elapsed)

    @property
    def overhead(self) -> float:
        """Fraction of the fit's wall time (so far, or in all once it ended) spent inside this hook."""
        wall = self.stats.get("fit_seconds") or self._clock() - self._begin
        return self.stats["hook_seconds"] / wall if wall > 0 else 0.0

    # ---- drawing ---------------------------------------------------------------------------------------------
    def _draw(self, state: TrainState, final: bool = False) -> None:
        from IPython.display import Image

        t0 = self._clock()
        # the final frame stays in the saved notebook: encoded smaller, at a cost paid once
        self.last_png = self.frames.render(self.data, self._title(state), state.total_step,
                                           compress_level=6 if final else 1)
        if self._plot_handle is not None:
            self._plot_handle.update(Image(data=self.last_png, format="png"))
        cost = self._clock() - t0
        _FRAME_COSTS[self.dpi][self.frames.last_kind] = cost
        self.stats["draws"] += 1
        self.stats["axes_draws"] += self.frames.last_kind == "axes"
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

    def _time_left(self, state: TrainState, now: float) -> float | None:
        """Seconds the fit still needs: the Trainer's ETA, else this fit's pace so far."""
        eta = self.data.last.get("time/eta_seconds")
        done, total = state.step - self._begin_step, state.total_step or 0
        if eta is None and total and done > 0:
            eta = (now - self._begin) / done * (total - state.step)
        return eta

    def _progress_html(self, state: TrainState) -> str:
        now = self._clock()
        # state.elapsed may only count earlier sessions until the fit ends: add this session's clock
        elapsed = max(state.elapsed or 0.0, self._elapsed0 + now - self._begin)
        return progress_html(state, self.data, elapsed, self._time_left(state, now), self._end, self._last_save,
                             self._eval_html)
