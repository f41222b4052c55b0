"""Training curves from metrics rows: the live dashboard's figure, `trainer.plot()`, `curves.png`, run comparison.

Only matplotlib's object API is used (`matplotlib.figure.Figure`, no pyplot state), so drawing never depends on
the active backend, figures are not shown twice by the inline backend, and `save_curves_png` works in a plain
Python process or under torchrun without IPython.
"""

from __future__ import annotations

import io
import json
import math
import sys
from pathlib import Path
from typing import Any, Iterable, Sequence

__all__ = ["CurveData", "CurvesFigure", "plot_history", "save_curves_png", "compare_runs", "load_tracker",
           "LOSS_KEYS", "TRACKER_GLOB"]

LOSS_KEYS = ("loss/reduced_llm_loss", "loss/local_loss", "loss")  # first one present is "the" training loss
EVAL_LOSS_KEY = "eval/loss"
TRACKER_GLOB = "*/logs/exp_tracking/rank0/tracker.jsonl"

# (panel title, metrics key, y label); panels after the first four appear only when their key has values
_PANELS = [
    ("loss", None, "loss"),
    ("learning rate", "lr", "lr"),
    ("grad norm", "grad_norm", "L2 norm"),
    ("tokens/s per device", "runtime_info/tgs", "tokens/s"),  # a device: a GPU, or the CPU
    ("MFU", "runtime_info/mfu", "MFU"),
    ("peak memory", "memory/max_memory_GB", "GB"),
]
_ALWAYS = 4


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if math.isfinite(out) else None


class CurveData:
    """Columns of (step, value) pairs grown one metrics row at a time, plus the EMA-smoothed loss.

    The EMA is debiased (as fastai's smooth loss), so the first points are not dragged towards zero.
    """

    def __init__(self, smoothing: float = 0.9):
        self.smoothing = smoothing
        self.cols: dict[str, tuple[list[float], list[float]]] = {}
        self.ema: tuple[list[float], list[float]] = ([], [])
        self._ema_acc, self._ema_n = 0.0, 0
        self.last: dict[str, Any] = {}  # the latest training row
        self.last_eval: dict[str, Any] | None = None
        self.loss_key: str | None = None

    def add(self, row: dict[str, Any], step: int | None = None) -> None:
        step = row.get("step", step)
        if step is None:
            return
        x = float(step)
        for key in (*LOSS_KEYS, EVAL_LOSS_KEY, *(k for _, k, _ in _PANELS if k)):
            y = _number(row.get(key))
            if y is not None:
                xs, ys = self.cols.setdefault(key, ([], []))
                xs.append(x)
                ys.append(y)
        if _number(row.get(EVAL_LOSS_KEY)) is not None:
            self.last_eval = row
        loss_key = next((k for k in LOSS_KEYS if _number(row.get(k)) is not None), None)
        if loss_key is not None:
            self.loss_key = self.loss_key or loss_key
            y = _number(row.get(self.loss_key))
            if y is not None:
                self._ema_n += 1
                self._ema_acc = self.smoothing * self._ema_acc + (1 - self.smoothing) * y
                self.ema[0].append(x)
                self.ema[1].append(self._ema_acc / (1 - self.smoothing ** self._ema_n))
        if loss_key is not None or EVAL_LOSS_KEY not in row:
            self.last = row

    @classmethod
    def from_rows(cls, rows: Iterable[dict[str, Any]], smoothing: float = 0.9) -> "CurveData":
        data = cls(smoothing)
        for row in rows:
            data.add(row)
        return data

    @property
    def smoothed_loss(self) -> float | None:
        return self.ema[1][-1] if self.ema[1] else None

    def panels(self) -> list[tuple[str, str | None, str]]:
        return [p for i, p in enumerate(_PANELS) if i < _ALWAYS or p[1] in self.cols]


class CurvesFigure:
    """One figure reused across redraws: lines get new data instead of being re-plotted (cheap to refresh)."""

    def __init__(self, panel_size: tuple[float, float] = (4.2, 2.5), dpi: int = 80):
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        self.fig = Figure(dpi=dpi)
        FigureCanvasAgg(self.fig)
        self.panel_size, self.dpi = panel_size, dpi
        self._layout: list | None = None
        self._lines: dict[str, Any] = {}
        self._axes: list[Any] = []

    def _build(self, panels: list, with_eval: bool) -> None:
        self.fig.clear()
        ncols = 2 if len(panels) <= 4 else 3
        nrows = math.ceil(len(panels) / ncols)
        self.fig.set_size_inches(self.panel_size[0] * ncols, self.panel_size[1] * nrows)
        axes = self.fig.subplots(nrows, ncols, squeeze=False).ravel()
        self._lines, self._axes = {}, []
        for ax, (title, key, ylabel) in zip(axes, panels):
            ax.set_title(title, fontsize=10)
            ax.set_xlabel("step", fontsize=8)
            ax.tick_params(labelsize=8)
            ax.locator_params(nbins=5)  # fewer tick labels: text layout is most of a redraw's cost
            ax.grid(alpha=0.3)
            if key is None:
                self._lines["raw"], = ax.plot([], [], color="C0", alpha=0.35, lw=1, label="loss")
                self._lines["ema"], = ax.plot([], [], color="C0", lw=2, label="smoothed")
                self._lines["eval"], = ax.plot([], [], "o-", color="C3", ms=4, lw=1,
                                               label="eval loss" if with_eval else "_nolegend_")
                ax.legend(fontsize=7, loc="upper right")
            else:
                self._lines[key], = ax.plot([], [], color="C1" if key == "lr" else "C2", lw=1.5)
                if key == "lr":
                    ax.ticklabel_format(axis="y", style="sci", scilimits=(-3, 3))
            self._axes.append(ax)
        for ax in axes[len(panels):]:
            ax.set_visible(False)
        # fixed margins: constrained/tight layout would double the cost of every redraw
        self.fig.subplots_adjust(left=0.07 if ncols == 2 else 0.05, right=0.98, bottom=0.12 if nrows > 1 else 0.2,
                                 top=0.88 if nrows > 1 else 0.8, wspace=0.22, hspace=0.55)
        self._layout = (panels, with_eval)

    @staticmethod
    def layout_of(data: CurveData) -> tuple:
        """What decides the figure's axes: the panels and whether the loss panel has an eval line."""
        return data.panels(), EVAL_LOSS_KEY in data.cols

    @property
    def axes(self) -> list[Any]:
        """The visible panels, in `CurveData.panels()` order."""
        return self._axes

    def live_artists(self) -> list[Any]:
        """What changes from one frame to the next, in drawing order: each panel's lines then its legend (drawn over
        the lines, as in a full draw), then the title."""
        out = []
        for ax in self._axes:
            out += [line for line in self._lines.values() if line.axes is ax]
            if ax.get_legend() is not None:
                out.append(ax.get_legend())
        if self.fig._suptitle is not None:
            out.append(self.fig._suptitle)
        return out

    def draw(self, data: CurveData, title: str | None = None):
        """Draw `data` with each panel's limits fitted to its lines (as `trainer.plot()` and curves.png show it)."""
        self.set_data(data, title)
        for ax in self._axes:
            ax.relim()
            ax.set_autoscale_on(True)  # a live frame may have fixed the limits of this (shared) figure
            ax.autoscale_view()
        return self.fig

    def set_data(self, data: CurveData, title: str | None = None) -> None:
        """Give the lines their data and the figure its title; the axes' limits are left as they are."""
        if self.layout_of(data) != self._layout:
            self._build(*self.layout_of(data))
        empty: tuple[list, list] = ([], [])
        for name, line in self._lines.items():
            if name == "raw":
                line.set_data(*data.cols.get(data.loss_key or "", empty))
            elif name == "ema":
                line.set_data(*data.ema)
            elif name == "eval":
                line.set_data(*data.cols.get(EVAL_LOSS_KEY, empty))
            else:
                xs, ys = data.cols.get(name, empty)
                line.set_data(xs, ys)
                line.set_marker("." if len(xs) < 40 else "")  # a handful of points stays visible
        self.fig.suptitle(title or "", fontsize=10)

    def warm_up(self) -> "CurvesFigure":
        """Draw and render one frame of placeholder rows now: matplotlib's fonts, text layout and canvas are made
        here, not in the first real frame, of which they are most of the cost, in time and in memory."""
        rows = [{"step": step, LOSS_KEYS[0]: 1.0, EVAL_LOSS_KEY: 1.0, **{k: 1.0 for _, k, _ in _PANELS if k}}
                for step in (1, 2)]
        self.draw(CurveData.from_rows(rows))
        self.png()
        return self

    def png(self) -> bytes:
        buf = io.BytesIO()
        self.fig.savefig(buf, format="png", dpi=self.dpi)
        return buf.getvalue()


def _rows_of(history: Any) -> list[dict[str, Any]]:
    if history is None:
        return []
    if hasattr(history, "to_dict"):  # pandas DataFrame: NaN where a row lacks a key
        return [{k: v for k, v in row.items() if _number(v) is not None or not isinstance(v, float)}
                for row in history.to_dict("records")]
    return [dict(r) for r in history]


def _enable_inline_png() -> None:
    """Let a returned bare Figure show as a PNG in a kernel (matplotlib-inline registers this only once pyplot
    has drawn something), without going through pyplot, which would show the figure a second time."""
    if "IPython" not in sys.modules:
        return
    from IPython import get_ipython

    ip = get_ipython()
    if ip is None:
        return
    from matplotlib.figure import Figure

    png = ip.display_formatter.formatters["image/png"]
    try:
        png.lookup_by_type(Figure)
    except KeyError:
        from IPython.core.pylabtools import print_figure

        png.for_type(Figure, lambda fig: print_figure(fig, "png", bbox_inches="tight"))


def plot_history(df: Any, ax: Any = None, smoothing: float = 0.9, title: str | None = None):
    """The dashboard's panels from a history (DataFrame or list of metrics rows) as a matplotlib Figure.

    With `ax`, only the loss panel (raw, smoothed, eval) is drawn into that axes and its figure is returned.
    """
    data = CurveData.from_rows(_rows_of(df), smoothing)
    if ax is not None:
        ax.plot(*data.cols.get(data.loss_key or "", ([], [])), color="C0", alpha=0.35, lw=1, label="loss")
        ax.plot(*data.ema, color="C0", lw=2, label="smoothed")
        if EVAL_LOSS_KEY in data.cols:
            ax.plot(*data.cols[EVAL_LOSS_KEY], "o-", color="C3", ms=4, label="eval loss")
        ax.set_xlabel("step")
        ax.legend()
        return ax.figure
    _enable_inline_png()
    return CurvesFigure(dpi=90).draw(data, title)


def save_curves_png(history: Any, path: str | Path, dpi: int = 100, title: str | None = None,
                    figure: CurvesFigure | None = None) -> Path:
    """Write the curves of a history (DataFrame or rows) as a PNG; needs only matplotlib (Agg), no IPython.
    `figure`: draw into this one (made earlier) instead of a new one of `dpi`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig = figure or CurvesFigure(dpi=dpi)
    fig.draw(CurveData.from_rows(_rows_of(history)), title)
    path.write_bytes(fig.png())
    return path


def load_tracker(path: str | Path):
    """One run's `tracker.jsonl` as a DataFrame. A half-written last line (a run still going) is skipped."""
    import pandas as pd

    path = Path(path)
    lines = path.read_text(encoding="utf-8").split("\n")
    rows = []
    for i, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            if i == len(lines) and not line.endswith("}"):  # the writer is mid-line
                continue
            raise ValueError(f"{path}:{i}: not valid JSON ({exc.msg}): {line[:80]!r}") from None
        if not isinstance(row, dict):
            raise ValueError(f"{path}:{i}: expected a JSON object, got {type(row).__name__}")
        rows.append(row)
    return pd.DataFrame(rows)


def compare_runs(work_dir: str | Path | Sequence[str | Path], smoothing: float = 0.9, title: str | None = None):
    """Loss curves of several runs side by side: `<work_dir>/*/logs/exp_tracking/rank0/tracker.jsonl`.

    Panels: training loss (smoothed, raw faint), eval loss when any run has it, learning rate. `work_dir` may
    also be a list of run folders or tracker files. Returns a matplotlib Figure.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    trackers = _find_trackers(work_dir)
    if not trackers:
        raise FileNotFoundError(f"no {TRACKER_GLOB} under {work_dir}")
    runs = [(label, CurveData.from_rows(_rows_of(load_tracker(p)), smoothing)) for label, p in trackers]
    has_eval = any(EVAL_LOSS_KEY in d.cols for _, d in runs)
    panels = ["loss"] + (["eval loss"] if has_eval else []) + ["learning rate"]
    _enable_inline_png()
    fig = Figure(figsize=(4.6 * len(panels), 3.2), dpi=90, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(panels), squeeze=False).ravel()
    for i, (label, data) in enumerate(runs):
        color = f"C{i % 10}"
        raw = data.cols.get(data.loss_key or "", ([], []))
        axes[0].plot(*raw, color=color, alpha=0.25, lw=1)
        axes[0].plot(*data.ema, color=color, lw=2, label=label)
        if has_eval and EVAL_LOSS_KEY in data.cols:
            axes[1].plot(*data.cols[EVAL_LOSS_KEY], "o-", color=color, ms=4, label=label)
        axes[-1].plot(*data.cols.get("lr", ([], [])), color=color, lw=1.5, label=label)
    for ax, name in zip(axes, panels):
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("step", fontsize=8)
        ax.grid(alpha=0.3)
        ax.tick_params(labelsize=8)
    axes[0].legend(fontsize=7)
    fig.suptitle(title or f"{len(runs)} run(s) in {work_dir}" if not isinstance(work_dir, (list, tuple)) else
                 title or f"{len(runs)} run(s)", fontsize=10)
    return fig


def _find_trackers(work_dir: Any) -> list[tuple[str, Path]]:
    if isinstance(work_dir, (list, tuple)):
        out = []
        for item in work_dir:
            p = Path(item)
            if p.is_file():
                out.append((_run_label(p), p))
            else:
                out += [(_run_label(t), t) for t in sorted(p.glob("logs/exp_tracking/rank0/tracker.jsonl"))]
        return out
    return [(_run_label(p), p) for p in sorted(Path(work_dir).glob(TRACKER_GLOB))]


def _run_label(tracker: Path) -> str:
    # <run>/logs/exp_tracking/rank0/tracker.jsonl -> <run>
    parts = tracker.parts
    return parts[-5] if len(parts) >= 5 and parts[-4] == "logs" else tracker.stem
