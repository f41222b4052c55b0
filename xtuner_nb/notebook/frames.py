"""The live dashboard's frames, cheap enough to draw every second or two while a model trains.

A full draw of the four panels costs about 0.1-0.15 s on a 2-core CPU, and most of that is the axes: tick labels,
titles, grid (`bench/dashboard_overhead.py --renderer` measures it). From one frame to the next usually only the
lines move, so `LiveFrames` draws the axes once, keeps that picture as the background, and for the next frames
restores it and draws only the lines, legends and title onto it (blitting): about ten times cheaper. The axes are
drawn again only when the limits must change, and they rarely must: the x axis spans the whole run (the first step
to `total_step`) from the first frame, and each y axis starts at 0 for values that are never negative (loss,
learning rate, grad norm, tokens/s, memory) and grows, with ample headroom, only when a value rises above its top.

The PNG is encoded from the canvas's pixels with a fast zlib level (encoding is the other half of a blitted frame's
cost); the final frame, the one a saved notebook keeps, is encoded more compactly.
"""

from __future__ import annotations

import io
from typing import Any, Callable

from .plots import EVAL_LOSS_KEY, CurveData, CurvesFigure

__all__ = ["LiveFrames", "live_y_limits", "HEADROOM", "GROWTH_HEADROOM"]

HEADROOM = 0.25  # a new y axis gets this fraction of the values' span above the highest value
# an axis that must grow gets as much again: what rose once (a warm-up's learning rate, the throughput of the first
# steps) tends to rise again, and every growth costs an axes frame, several times a lines frame (about 2 s under load)
GROWTH_HEADROOM = 1.0
X_MARGIN = 0.05  # as matplotlib's autoscale: the finished run fills the x axis as `trainer.plot()` shows it
Limits = tuple[float, float]


def live_y_limits(current: Limits | None, low: float, high: float) -> Limits:
    """The y limits of a live panel whose values span [low, high]: `current` while they fit in it, else from 0 (or
    below `low`, for negative values) to `high` plus a headroom of the span (HEADROOM, GROWTH_HEADROOM)."""
    if current is not None and current[0] <= low and high <= current[1]:
        return current
    headroom = HEADROOM if current is None else GROWTH_HEADROOM
    bottom = 0.0 if low >= 0 else low
    span = (high - bottom) or abs(high) or 1.0
    if bottom < 0:
        bottom -= headroom * span
    if current is not None:
        bottom = min(bottom, current[0])
    return bottom, high + headroom * span


def _x_limits(current: Limits | None, first: float, last: float, x_max: float | None) -> Limits:
    if current is not None and current[0] <= first and last <= current[1]:
        return current
    end = max(last, x_max or 0.0) if x_max else last + max(last - first, 1.0)  # open-ended: room to double
    pad = X_MARGIN * ((end - first) or 1.0)
    return first - pad, end + pad


def _panel_values(data: CurveData) -> list[list[float]]:
    """The y values drawn in each panel of `data.panels()`, in that order."""
    out = []
    for _, key, _ in data.panels():
        if key is None:  # the loss panel: raw, smoothed, eval
            keys = [data.loss_key or "", EVAL_LOSS_KEY]
            out.append([y for k in keys for y in data.cols.get(k, ([], []))[1]] + data.ema[1])
        else:
            out.append(list(data.cols.get(key, ([], []))[1]))
    return out


class LiveFrames:
    """PNG frames of a run's curves, drawn on one reused `CurvesFigure`, the axes only when they change.

    `reset()` at the start of a fit; `axes_due(data, x_max)` says whether the next frame redraws the axes (the
    costly kind); `render(...)` returns the PNG and sets `last_kind` to "axes" or "lines".
    """

    def __init__(self, figure: CurvesFigure | None = None, dpi: int = 80):
        self.figure = figure or CurvesFigure(dpi=dpi)
        self.last_kind: str | None = None
        self.reset()

    def reset(self) -> None:
        """A new fit: its first frame chooses the limits afresh."""
        self._background: Any = None
        self._drawn: tuple | None = None  # (layout, x limits, y limits per panel) of the background

    def limits(self, data: CurveData, x_max: float | None) -> tuple[Limits, list[Limits]]:
        """The x limits and each panel's y limits the next frame of `data` would have."""
        current = self._drawn[1:] if self._drawn is not None else None
        xs = [x for xs, _ in data.cols.values() for x in xs] or [0.0]
        x_limits = _x_limits(current[0] if current else None, min(xs), max(xs), x_max)
        y_limits = []
        for i, values in enumerate(_panel_values(data)):
            old = current[1][i] if current and i < len(current[1]) else None
            y_limits.append(live_y_limits(old, min(values), max(values)) if values else (old or (0.0, 1.0)))
        return x_limits, y_limits

    def axes_due(self, data: CurveData, x_max: float | None) -> bool:
        """Whether the next frame of `data` must draw the axes again (new panels, or limits that must grow)."""
        if self._drawn is None or CurvesFigure.layout_of(data) != self._drawn[0]:
            return True
        return self.limits(data, x_max) != self._drawn[1:]

    def render(self, data: CurveData, title: str, x_max: float | None, compress_level: int = 1) -> bytes:
        """The PNG of `data`: the kept background plus the lines when the axes may stay, else everything."""
        if self.axes_due(data, x_max):
            self.figure.set_data(data, title)
            self._draw_axes(CurvesFigure.layout_of(data), *self.limits(data, x_max))
            self.last_kind = "axes"
        else:
            self.figure.set_data(data, title)
            self.figure.fig.canvas.restore_region(self._background)
            self.last_kind = "lines"
        for artist in self.figure.live_artists():
            self.figure.fig.draw_artist(artist)
        return self._png(compress_level)

    def _draw_axes(self, layout: tuple, x_limits: Limits, y_limits: list[Limits]) -> None:
        fig, canvas = self.figure.fig, self.figure.fig.canvas
        for ax, y in zip(self.figure.axes, y_limits):
            ax.set_xlim(x_limits)
            ax.set_ylim(y)
        live = self.figure.live_artists()
        for artist in live:  # left out of the background (canvas.draw skips animated artists)
            artist.set_animated(True)
        try:
            canvas.draw()
            self._background = canvas.copy_from_bbox(fig.bbox)
        finally:
            for artist in live:
                artist.set_animated(False)
        self._drawn = (layout, x_limits, y_limits)

    def _png(self, compress_level: int) -> bytes:
        from PIL import Image

        renderer = self.figure.fig.canvas.get_renderer()
        size = (int(renderer.width), int(renderer.height))
        image = Image.frombuffer("RGBA", size, self.figure.fig.canvas.buffer_rgba(), "raw", "RGBA", 0, 1)
        buf = io.BytesIO()
        image.save(buf, format="png", compress_level=compress_level)
        return buf.getvalue()

    def warm_up(self) -> "LiveFrames":
        """Pay the one-off costs now: matplotlib's fonts and text layout, the canvas, the PNG encoder."""
        self.figure.warm_up()
        self.render(_typical_run(), "warm-up", 100)
        self.reset()
        return self

    def measure(self, clock: Callable[[], float]) -> dict[str, float]:
        """What an axes frame and a lines frame of a typical run cost here, in seconds: {"axes": s, "lines": s}."""
        data = _typical_run()
        t0 = clock()
        self.render(data, "warm-up", 100)
        t1 = clock()
        self.render(data, "warm-up", 100)
        costs = {"axes": t1 - t0, "lines": clock() - t1}
        self.reset()
        return costs


def _typical_run() -> CurveData:
    """The four panels of a 100-step run with an eval."""
    rows = [{"step": s, "loss/reduced_llm_loss": 2.0 + 1 / s, "lr": 1e-4, "grad_norm": 1.0, "runtime_info/tgs": 1000.0}
            for s in range(1, 101)]
    return CurveData.from_rows(rows + [{"step": 100, EVAL_LOSS_KEY: 2.0}])
