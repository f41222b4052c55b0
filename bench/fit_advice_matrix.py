"""The fit check's advice on four devices: every way it marks "fits", with its estimate against the budget.

    .venv/bin/python bench/fit_advice_matrix.py            # a Markdown table for a note (seconds, any machine)
    .venv/bin/python bench/fit_advice_matrix.py --verify   # also rebuild every "fits" way on the meta device

Qwen3-8B and Qwen3-1.7B, full fine-tune and LoRA, each fine-tuning a checkpoint (`load_from` set), on a 24 GiB CPU
machine and on a simulated 16 GB T4 (sm75, fp16), 24 GB L4 (sm89) and 80 GB H100 (sm90): the capability, the free
device memory and the host RAM are given (`DeviceBudget`), so the table is the same on every machine. Precision is
`choose_precision`'s for the device; the run is the TrainerConfig defaults with packs of 4096 tokens.

QLoRA (issue 29), `qlora_matrix()`: Qwen3-8B with r=16, packs of 2048 and recompute on, fine-tuned in full, with
LoRA on a 16-bit base and with QLoRA (`quantize_base="nf4"`), on the simulated T4 and L4: on the T4 only QLoRA fits;
on the L4 the 16-bit LoRA fits and is what the advice offers for the full fine-tune.

`--verify` applies each fitting way to the config (`config_with_changes`), rebuilds the model on the meta device (peft's
LoRA applied where the way uses it) and checks that its parameter count is the estimate's, that the fit check's own
estimate of the changed config is the way's, and that it is within the budget (tests/train/test_fit_advice_matrix.py
does the same).
"""

from __future__ import annotations

import argparse
import functools
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from xtuner_nb.config import FSDPConfig  # noqa: E402
from xtuner_nb.datasets import DataloaderConfig  # noqa: E402
from xtuner_nb.model import LoRAConfig, Qwen3Dense1P7BConfig, Qwen3Dense8BConfig  # noqa: E402
from xtuner_nb.train import TrainerConfig  # noqa: E402
from xtuner_nb.train.memory import (DeviceBudget, GiB, config_with_changes, estimate_run,  # noqa: E402
                                    ways_to_fit)
from xtuner_nb.train.precision import choose_precision  # noqa: E402

PACK = 4096
MODELS = {"Qwen3-8B": Qwen3Dense8BConfig, "Qwen3-1.7B": Qwen3Dense1P7BConfig}
# (device, name, free device memory GiB, host RAM available GiB, capability); a CPU's budget is its RAM plus what
# the process holds (0.4 GiB here, measured on the project's CPU machine after the imports)
PROCESS_GIB = 0.4
DEVICES = {
    "CPU 24 GiB": DeviceBudget(torch.device("cpu"), "cpu", int((22.6 + PROCESS_GIB) * GiB), int(22.6 * GiB),
                               process_bytes=int(PROCESS_GIB * GiB), what="RAM available plus what the process holds"),
    "T4 16 GB": DeviceBudget(torch.device("cuda", 0), "T4", int(14.5 * GiB), int(12.0 * GiB), (7, 5), 1,
                             what="free on a T4"),
    "L4 24 GB": DeviceBudget(torch.device("cuda", 0), "L4", int(22.0 * GiB), int(30.0 * GiB), (8, 9), 1,
                             what="free on an L4"),
    "H100 80 GB": DeviceBudget(torch.device("cuda", 0), "H100", int(79.0 * GiB), int(200.0 * GiB), (9, 0), 1,
                               what="free on an H100"),
}


QLORA_PACK = 2048
QLORA_RUNS = {"full": None, "LoRA": LoRAConfig(r=16), "QLoRA": LoRAConfig(r=16, quantize_base="nf4")}
QLORA_DEVICES = ("T4 16 GB", "L4 24 GB")


def run_config(model: str, lora: bool | LoRAConfig, pack: int = PACK, recompute: float | None = None) -> TrainerConfig:
    lora_cfg = LoRAConfig(r=16) if lora is True else (lora or None)
    fsdp = {} if recompute is None else {"fsdp_cfg": FSDPConfig(recompute_ratio=recompute)}
    return TrainerConfig(model_cfg=MODELS[model](), load_from="/checkpoints/" + model, tokenizer_path=None,
                         dataloader_cfg=DataloaderConfig(pack_max_length=pack), lora_cfg=lora_cfg, **fsdp)


def precision_on(config: TrainerConfig, budget: DeviceBudget):
    return choose_precision(config.fsdp_cfg or FSDPConfig(), budget.device, budget.capability)


def advice(model: str, lora: bool | LoRAConfig, device: str, **run):
    """(the run's estimate, its ways to fit) on one device; `run`: run_config's pack and recompute."""
    config, budget = run_config(model, lora, **run), DEVICES[device]
    est = estimate_run(config, precision_on(config, budget), 1, budget.device.type, budget.process_bytes)
    return config, budget, est, ways_to_fit(est, budget)


def meta_param_counts(config: TrainerConfig) -> tuple[int, int]:
    """(parameters, trainable) of the model the config builds, on the meta device, with peft's LoRA when set."""
    # the counts do not depend on a 4-bit base (an NF4 weight has its weight's shape): counted without torchao
    lora_cfg = config.lora_cfg and config.lora_cfg.model_copy(update={"quantize_base": None})
    lora = lora_cfg.model_dump_json() if lora_cfg is not None else None
    return _meta_param_counts(type(config.model_cfg), config.model_cfg.model_dump_json(), lora)


@functools.lru_cache(maxsize=None)  # many ways share a model: build each once
def _meta_param_counts(cls, model_json: str, lora_json: str | None) -> tuple[int, int]:
    model = cls.model_validate_json(model_json).build(device="meta")
    if lora_json is not None:
        from xtuner_nb.model.lora import apply_lora

        model = apply_lora(model, LoRAConfig.model_validate_json(lora_json))
    params = list(model.parameters())
    return sum(p.numel() for p in params), sum(p.numel() for p in params if p.requires_grad)


def verify(config: TrainerConfig, budget: DeviceBudget, way) -> None:
    """The checks of `--verify` for one fitting way (AssertionError naming what failed)."""
    changed = config_with_changes(config, way.changes)
    est = estimate_run(changed, precision_on(changed, budget), way.processes, budget.device.type,
                       budget.process_bytes)
    assert est.parts() == way.estimate.parts() and est.host_bytes == way.estimate.host_bytes, way.text
    assert est.total <= budget.device_bytes, way.text
    if budget.on_gpu and est.host_bytes:
        assert est.host_bytes * way.processes <= budget.host_bytes, way.text
    params, trainable = meta_param_counts(changed)
    lora_added = est.trainable if changed.lora_cfg is not None else 0  # peft adds the adapters to the base
    assert (params - lora_added, trainable) == (est.params, est.trainable), (way.text, params, trainable)


def _host(est, processes: int, budget: DeviceBudget) -> str:
    """Host RAM a GPU run needs besides the device (a host-side build, cpu_offload) against what the host has."""
    if not budget.on_gpu:
        return "(the device)"
    return f"{est.host_bytes * processes / GiB:.1f} of {budget.host_bytes / GiB:.1f}"


def matrix(check: bool = False) -> list[dict]:
    rows = []
    for model in MODELS:
        for lora in (False, True):
            for device in DEVICES:
                config, budget, est, ways = advice(model, lora, device)
                run = f"{model} {'LoRA' if lora else 'full'}"
                run_fits = budget.fits(est)
                rows.append(dict(run=run, device=device, way="(as configured)", estimate=est.total / GiB,
                                 budget=budget.device_bytes / GiB, fits=run_fits, run_fits=run_fits,
                                 host=_host(est, 1, budget)))
                for way in ways:
                    if way.fits and check:
                        verify(config, budget, way)
                    rows.append(dict(run=run, device=device, way=way.text, estimate=way.estimate.total / GiB,
                                     budget=budget.device_bytes / GiB, fits=way.fits, run_fits=run_fits,
                                     host=_host(way.estimate, way.processes, budget)))
    return rows


def qlora_matrix(check: bool = False) -> list[dict]:
    """Qwen3-8B, r=16, packs of 2048, recompute on: full, LoRA and QLoRA as configured on the T4 and the L4, and the
    ways the advice lists for each (a run that does not fit)."""
    rows = []
    for run, lora in QLORA_RUNS.items():
        for device in QLORA_DEVICES:
            config, budget, est, ways = advice("Qwen3-8B", lora, device, pack=QLORA_PACK, recompute=1.0)
            run_fits = budget.fits(est)
            rows.append(dict(run=f"Qwen3-8B {run}", device=device, way="(as configured)", estimate=est.total / GiB,
                             budget=budget.device_bytes / GiB, fits=run_fits, run_fits=run_fits,
                             host=_host(est, 1, budget), weights=est.weights / GiB))
            for way in ([] if run_fits else ways):
                if way.fits and check:
                    verify(config, budget, way)
                rows.append(dict(run=f"Qwen3-8B {run}", device=device, way=way.text, estimate=way.estimate.total / GiB,
                                 budget=budget.device_bytes / GiB, fits=way.fits, run_fits=run_fits,
                                 host=_host(way.estimate, way.processes, budget), weights=way.estimate.weights / GiB))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--verify", action="store_true", help="rebuild every fitting way on the meta device")
    parser.add_argument("--all", action="store_true", help="list the ways that do not fit too")
    # the fit check lists ways only for a run that does not fit; so does this table (--verify checks them all)
    args = parser.parse_args()
    print(f"pack {PACK}; budgets: " + "; ".join(f"{k}: {b.device_bytes / GiB:.1f} GiB usable, host RAM "
                                                f"{b.host_bytes / GiB:.1f} GiB" for k, b in DEVICES.items()))
    print("\n| run | device | way | estimate GiB | budget GiB | host RAM GiB | fits |\n|---|---|---|---|---|---|---|")
    for r in matrix(args.verify):
        if r["way"] == "(as configured)" or (not r["run_fits"] and (r["fits"] or args.all)):
            print(f"| {r['run']} | {r['device']} | {r['way']} | {r['estimate']:.1f} | {r['budget']:.1f} | "
                  f"{r['host']} | {'yes' if r['fits'] else 'no'} |")
    print(f"\nQLoRA: Qwen3-8B, r=16, pack {QLORA_PACK}, recompute on\n\n| run | device | way | weights GiB | "
          "estimate GiB | budget GiB | host RAM GiB | fits |\n|---|---|---|---|---|---|---|---|")
    for r in qlora_matrix(args.verify):
        if r["way"] == "(as configured)" or r["fits"] or args.all:
            print(f"| {r['run']} | {r['device']} | {r['way']} | {r['weights']:.1f} | {r['estimate']:.1f} | "
                  f"{r['budget']:.1f} | {r['host']} | {'yes' if r['fits'] else 'no'} |")
    if args.verify:
        print("\nverified: every fitting way rebuilds on the meta device with the estimate's parameter count, and "
              "the fit check's estimate of the changed config is the way's and within the budget")


if __name__ == "__main__":
    main()
