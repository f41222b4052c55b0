"""Honest advice (issue 23): every way the fit check marks "fits" does fit the device it runs on. Qwen3-8B and
Qwen3-1.7B, full and LoRA, on a 24 GiB CPU and on a simulated T4, L4 and H100 (capability, free memory and host RAM
given, so this runs on a CPU): each fitting way is applied to the config, rebuilt on the meta device (peft's LoRA
too) with the estimate's parameter count, and re-estimated by the fit check's own path within its budget
(`bench/fit_advice_matrix.py --verify` prints the same matrix as a table)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from xtuner_nb.train.memory import GiB

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("fit_advice_matrix", REPO / "bench" / "fit_advice_matrix.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_fitting_way_rebuilds_and_fits(bench):
    rows = bench.matrix(check=True)  # raises on the first fitting way that does not rebuild or does not fit
    cells = {(r["run"], r["device"]) for r in rows}
    assert len(cells) == len(bench.MODELS) * 2 * len(bench.DEVICES) == 16
    for r in rows:
        assert "num_hidden_layers" not in r["way"]  # every run fine-tunes a checkpoint
        if r["device"].startswith("CPU"):
            assert "cpu_offload" not in r["way"] and "torchrun" not in r["way"]
        if r["device"].startswith("T4"):
            assert "bfloat16" not in r["way"]  # sm75 has no bf16
    # the case: Qwen3-8B full on a 24 GiB CPU: only LoRA with its base in bf16 fits
    fitting = [r["way"] for r in rows if r["run"] == "Qwen3-8B full" and r["device"] == "CPU 24 GiB" and r["fits"]
               and r["way"] != "(as configured)"]
    assert fitting and all("LoRAConfig" in w and "precision='bfloat16'" in w for w in fitting)
    # a way that does not lower the estimate is never listed
    assert all(r["estimate"] < next(c["estimate"] for c in rows if (c["run"], c["device"], c["way"]) ==
                                    (r["run"], r["device"], "(as configured)"))
               for r in rows if r["way"] != "(as configured)")


def test_lora_is_priced_with_its_base_in_the_compute_dtype(bench):
    """fp32 on the CPU (its default), fp16 on the T4, bf16 on the L4 and H100: the frozen base is 4 or 2 bytes a
    parameter, as `build.build_model` builds it."""
    for device, bytes_per_param in [("CPU 24 GiB", 4), ("T4 16 GB", 2), ("L4 24 GB", 2), ("H100 80 GB", 2)]:
        _, _, est, _ = bench.advice("Qwen3-8B", True, device)
        compute_copy = (bytes_per_param if bytes_per_param < 4 else 0) * est.trainable
        assert est.weights == bytes_per_param * est.params + 4 * est.trainable + compute_copy
    # on the CPU the bf16 way re-prices the base at 2 bytes
    _, _, est, ways = bench.advice("Qwen3-8B", True, "CPU 24 GiB")
    bf16 = next(w for w in ways if w.changes == {"param_dtype": "bfloat16"})
    assert est.weights - bf16.estimate.weights == 2 * est.params - 2 * est.trainable
    assert bf16.estimate.weights < 16 * GiB < est.weights
