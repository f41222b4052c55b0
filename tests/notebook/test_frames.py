"""LiveFrames: the dashboard's frames drawn for real (matplotlib Agg, Pillow): the axes only when they change."""

import io
import math
import time

import numpy as np
import pytest
from PIL import Image

from xtuner_nb.notebook.frames import LiveFrames, live_y_limits
from xtuner_nb.notebook.plots import CurveData

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def rows(last, first=1, tgs=lambda s: 1000.0):
    """A 120-step run whose loss, learning rate (cosine) and grad norm are highest in the first steps."""
    return [{"step": s, "lr": 1e-3 * (0.55 + 0.45 * math.cos(math.pi * s / 120)),
             "grad_norm": 1.5 * math.exp(-s / 40) + 0.1 * abs(math.sin(s)),
             "loss/reduced_llm_loss": 3 * math.exp(-s / 30) + 0.5 + 0.05 * math.sin(3 * s),
             "runtime_info/tgs": tgs(s)} for s in range(first, last + 1)]


def pixels(png: bytes) -> np.ndarray:
    assert png.startswith(PNG_MAGIC)
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGBA"))


@pytest.fixture(scope="module")
def frames():
    return LiveFrames(dpi=80).warm_up()


def test_live_y_limits_start_at_zero_and_grow_only_when_a_value_rises_above_the_top():
    assert live_y_limits(None, 1.0, 9.0) == (0.0, 9.0 + 0.25 * 9.0)
    assert live_y_limits((0.0, 11.25), 0.5, 9.0) == (0.0, 11.25)  # a falling loss keeps its axes
    assert live_y_limits((0.0, 11.25), 0.5, 12.0) == (0.0, 24.0)  # grows, with as much again above it
    assert live_y_limits(None, -2.0, 2.0) == (-3.0, 3.0)  # negative values: room below too
    assert live_y_limits(None, 0.0, 0.0) == (0.0, 0.25)  # a flat zero still gets an axis


def test_a_lines_frame_is_the_axes_frame_of_the_same_data(frames):
    frames.reset()
    assert frames.axes_due(CurveData.from_rows(rows(30)), 120)
    frames.render(CurveData.from_rows(rows(30)), "run  step 30/120", 120)
    assert frames.last_kind == "axes"
    later = CurveData.from_rows(rows(60))  # the loss falls, the rest stays inside the axes drawn at step 30
    assert not frames.axes_due(later, 120)
    blitted = frames.render(later, "run  step 60/120", 120)
    assert frames.last_kind == "lines"
    limits = frames.limits(later, 120)

    fresh = LiveFrames(dpi=80).warm_up()
    drawn = fresh.render(later, "run  step 60/120", 120)
    assert fresh.last_kind == "axes" and fresh.limits(later, 120) == limits
    assert np.array_equal(pixels(blitted), pixels(drawn))
    # and it is the figure of the data: the loss line reaches the step-60 end of the x axis, not the step-30 one
    assert not np.array_equal(pixels(blitted), pixels(frames.render(CurveData.from_rows(rows(30)), "x", 120)))


def test_the_axes_are_drawn_again_only_when_a_value_leaves_them(frames):
    frames.reset()
    kinds = []
    for last in range(10, 121, 10):  # a falling loss, a cosine learning rate, a noisy grad norm
        frames.render(CurveData.from_rows(rows(last)), f"step {last}", 120)
        kinds.append(frames.last_kind)
    assert kinds == ["axes"] + ["lines"] * 11

    frames.reset()
    kinds = []
    def warming_up(step):  # throughput climbing for the first 40 steps, then steady with 2% noise
        return 1000.0 * (1 - math.exp(-step / 15)) + 20 * math.sin(7 * step)

    for last in range(10, 121, 10):  # the throughput axis grows once, to twice its value, then stays
        frames.render(CurveData.from_rows(rows(last, tgs=warming_up)), f"step {last}", 120)
        kinds.append(frames.last_kind)
    assert kinds == ["axes", "axes"] + ["lines"] * 10, kinds


def test_the_x_axis_spans_the_whole_run_from_the_first_frame(frames):
    frames.reset()
    (x0, x1), _ = frames.limits(CurveData.from_rows(rows(5)), 120)
    assert x0 < 1 and x1 > 120  # as trainer.plot() frames the finished run: 5% margins
    (_, open_end), _ = frames.limits(CurveData.from_rows(rows(5)), None)  # no total_step: room for as many again
    assert open_end > 9


def test_a_lines_frame_costs_a_fraction_of_an_axes_frame(frames):
    costs = frames.measure(time.process_time)  # CPU time: what other processes on the machine do not change
    assert costs["lines"] < costs["axes"] / 2, costs
