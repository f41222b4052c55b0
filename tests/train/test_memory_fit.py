"""The fit check before allocating, its message, the OOM message and the held-memory warning: one estimate, one list
of ways to fit (`xtuner_nb.train.memory`)."""

from __future__ import annotations

import logging
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from xtuner_nb.config import FSDPConfig
from xtuner_nb.datasets import DataloaderConfig
from xtuner_nb.loss import CELossConfig
from xtuner_nb.model import Qwen3Dense1P7BConfig, Qwen3Dense8BConfig
from xtuner_nb.train import TrainerConfig
from xtuner_nb.train.distributed import DistInfo
from xtuner_nb.train.memory import (DeviceBudget, GiB, MemoryFitError, check_fit, check_run_fits, estimate_memory,
                                    oom_message, ways_to_fit)
from xtuner_nb.train.precision import choose_precision

REPO = Path(__file__).resolve().parents[2]
CUDA = torch.device("cuda", 0)
CPU = torch.device("cpu")


def gpu_budget(free_gib: float, capability=(8, 9), host_gib: float | None = None, gpus: int = 1) -> DeviceBudget:
    return DeviceBudget(CUDA, "test GPU", int(free_gib * GiB), None if host_gib is None else int(host_gib * GiB),
                        capability, gpus, what=f"free on a {free_gib:g} GiB test GPU")


def test_fit_check_refuses_with_ways_and_can_be_skipped(monkeypatch):
    est = estimate_memory(Qwen3Dense8BConfig(), 4096, param_dtype="bfloat16")
    budget = gpu_budget(24)
    with pytest.raises(MemoryFitError) as err:
        check_fit(est, budget)
    text = str(err.value)
    assert f"{est.total / GiB:.1f} GiB" in text and "24.0 GiB is free on a 24 GiB test GPU" in text
    fitting = [w for w in ways_to_fit(est, budget) if w.fits]
    assert fitting and any("LoRA" in w.text for w in fitting)
    assert all(w.estimate.total <= 24 * GiB for w in fitting)
    for w in fitting:
        assert f"fits  {w.text}: {w.estimate.total / GiB:.1f} GiB" in text
    monkeypatch.setenv("XTUNER_NB_SKIP_FIT_CHECK", "1")
    assert check_fit(est, budget).startswith("does not fit, check skipped")
    assert check_fit(estimate_memory(Qwen3Dense8BConfig(), 4096, lora=16), budget).startswith("fits")


def test_8b_trainer_is_refused_before_allocating(tmp_path):
    """The DONE-WHEN of issue 15: seconds, not an OOM kill; peak RSS under 2 GiB; the message names what fits. A
    checkpoint to fine-tune (load_from; nothing is read before the check), so LoRA in bf16 is what fits on this CPU."""
    script = textwrap.dedent(f"""
        import resource, time
        t0 = time.time()
        from xtuner_nb.model import Qwen3Dense8BConfig
        from xtuner_nb.train import Trainer
        from xtuner_nb.train.memory import MemoryFitError
        try:
            Trainer(model_cfg=Qwen3Dense8BConfig(), load_from={str(tmp_path / "Qwen3-8B")!r},
                    work_dir={str(tmp_path)!r}, device="cpu", show_dashboard=False)
        except MemoryFitError as exc:
            print(exc)
        print("SECONDS", time.time() - t0)
        # this process's own peak (VmHWM, of the memory map exec gave it): ru_maxrss would also count the peak of
        # the process it was started from, here pytest's, which exceeds 2 GiB late in the suite
        status = open("/proc/self/status").read().split("VmHWM:")
        own_peak = status[1].split()[0] if len(status) > 1 else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print("MAXRSS_KIB", own_peak)
    """)
    env = {"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO, env=env,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    text = out.stdout
    assert "needs about" in text and "of memory on cpu" in text and "RAM available" in text, text
    assert "Nothing was allocated" in text and "LoRA" in text, text
    assert "num_hidden_layers=" not in text and "cpu_offload" not in text, text  # a checkpoint, a CPU
    if "fits " in text:  # what fits on this machine's free RAM: LoRA with its frozen base in bf16
        assert all("LoRAConfig" in line and "precision='bfloat16'" in line
                   for line in text.splitlines() if line.strip().startswith("fits")), text
    rss_gib = int(text.split("MAXRSS_KIB")[1]) / 2**20
    seconds = float(text.split("SECONDS")[1].split()[0])
    print(f"8B refusal: {seconds:.1f} s, peak RSS {rss_gib:.2f} GiB")
    assert rss_gib < 2.0, rss_gib
    assert seconds < 60, seconds  # measured ~10 s on the shared 2-core VM (imports dominate)


def test_a_model_from_scratch_is_offered_fewer_layers_not_lora():
    cfg = TrainerConfig(model_cfg=Qwen3Dense1P7BConfig(), dataloader_cfg=DataloaderConfig(pack_max_length=4096))
    budget = DeviceBudget(CPU, "cpu", int(23 * GiB), int(22.6 * GiB), process_bytes=int(0.4 * GiB),
                          what="RAM available (test)")
    with pytest.raises(MemoryFitError) as err:
        check_run_fits(cfg, choose_precision(FSDPConfig(), CPU), DistInfo(0, 1, 0, CPU), logging.getLogger("t"),
                       budget)
    text = str(err.value)
    layers = [line for line in text.splitlines() if "num_hidden_layers=" in line]
    assert layers and all(line.strip().startswith("fits") for line in layers), text
    assert "LoRAConfig" not in text and "LoRA is not offered" in text, text
    with_ckpt = cfg.model_copy(update={"load_from": Path("/checkpoints/qwen3-1.7b")})
    with pytest.raises(MemoryFitError) as err:
        check_run_fits(with_ckpt, choose_precision(FSDPConfig(), CPU), DistInfo(0, 1, 0, CPU),
                       logging.getLogger("t"), budget)
    assert "num_hidden_layers=" not in str(err.value) and "LoRAConfig(r=16)" in str(err.value)


def test_cpu_offload_and_more_gpus_only_where_they_can_run():
    """Offload needs FSDP2 (torchrun, 2+ processes, a GPU) and the host RAM for every process of the node."""
    est = estimate_memory(Qwen3Dense8BConfig(), 4096, param_dtype="bfloat16", pretrained=True)
    texts = lambda budget: [w.text for w in ways_to_fit(est, budget)]  # noqa: E731
    assert not any("cpu_offload" in t or "torchrun" in t for t in texts(gpu_budget(80, host_gib=500)))  # one GPU
    cpu = DeviceBudget(CPU, "cpu", int(23 * GiB), int(22.6 * GiB), what="RAM")
    assert not any("cpu_offload" in t for t in texts(cpu))
    node = gpu_budget(80, host_gib=500, gpus=8)
    offload = [w for w in ways_to_fit(est, node) if "cpu_offload" in w.changes]
    assert offload and offload[0].processes == 8 and "torchrun --nproc-per-node=8" in offload[0].text
    assert offload[0].fits and offload[0].estimate.host_bytes * 8 <= 500 * GiB
    small_host = gpu_budget(80, host_gib=60, gpus=8)  # the 8 processes' share of the state does not fit the host
    offload = [w for w in ways_to_fit(est, small_host) if "cpu_offload" in w.changes]
    assert offload and not offload[0].fits and offload[0].estimate.host_bytes * 8 > 60 * GiB
    assert any(w.fits and w.changes.get("world_size") == 8 for w in ways_to_fit(est, node))  # sharding alone


def test_oom_message_names_the_ways_to_fit():
    cfg = TrainerConfig(model_cfg=Qwen3Dense8BConfig(), load_from=Path("/checkpoints/qwen3-8b"),
                        fsdp_cfg=FSDPConfig(recompute_ratio=0.5), loss_cfg=CELossConfig(mode="eager"),
                        dataloader_cfg=DataloaderConfig(pack_max_length=16384))
    precision = choose_precision(cfg.fsdp_cfg, CUDA, capability=(9, 0))
    text = oom_message(cfg, precision, DistInfo(0, 1, 0, CUDA), gpu_budget(79, capability=(9, 0), host_gib=200))
    assert text.startswith("Out of GPU memory; memory was freed")
    assert "CELossConfig(mode='chunk')" in text and "recompute_ratio=1.0" in text and "pack_max_length=8192" in text
    assert "Estimated per GPU" in text and "fits  lora_cfg=LoRAConfig(r=16)" in text


def test_a_lora_base_built_in_host_ram_must_fit_the_host():
    """LoRA builds its frozen base on the host before moving it to the GPU (`build.build_model`): a 24 GiB GPU with
    12 GiB of host RAM cannot take Qwen3-8B's 15 GiB bf16 base, and no way that keeps a 16-bit base is marked as
    fitting there."""
    from xtuner_nb.model import LoRAConfig

    est = estimate_memory(Qwen3Dense8BConfig(), 1024, lora=LoRAConfig(), pretrained=True)
    assert est.host_bytes == 2 * est.params and est.total < 22 * GiB
    with pytest.raises(MemoryFitError, match=r"needs 15\.3 GiB of host RAM besides, and 12\.0 GiB is available"):
        check_fit(est, gpu_budget(22, host_gib=12))
    # every way that keeps a 16-bit base builds it on the host: none fits. QLoRA (issue 29) loads its base into
    # 4-bit placeholders on the device, no host build: the advice's only way that fits
    ways = ways_to_fit(est, gpu_budget(22, host_gib=12))
    assert not any(w.fits for w in ways if "quantize_base" not in w.text)
    assert [w for w in ways if w.fits] and all("quantize_base='nf4'" in w.text for w in ways if w.fits)
    assert all(w.estimate.host_bytes == 0 for w in ways if w.fits)
    assert check_fit(est, gpu_budget(22, host_gib=30)).startswith("fits")
