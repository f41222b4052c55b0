"""One prepared run for a lent H100/H200 (under 5 minutes): throughput, MFU, memory, varlen correctness.

    bash bench/gpu_check.sh                      # on the GPU machine (installs carried wheels, then runs this)
    .venv/bin/python bench/gpu_check.py --smoke  # here, on CPU: tiny shapes, a few steps, the same code paths

What it measures, in one process, one configuration after the other (shorter packs first):
  1. varlen attention on the GPU (bf16, GQA, a pack of realistic sample lengths) against per-sample SDPA in fp32:
     max abs / relative difference of the output and of dq, dk, dv.
  2. For Qwen3 0.6B and 1.7B shapes (random init, the published configs) x pack lengths 8192 and 16384, bf16
     autocast over fp32 master weights, one pack per optimizer step, 1 warm-up + --steps timed steps:
       ours  xtuner_nb Trainer (varlen attention, chunked CE): tokens/s per GPU, MFU (model FLOPs, PaLM
             convention, bench/common.py counts them from the real sample lengths; the Trainer's own
             runtime_info/mfu is printed beside it), peak memory (largest per-step torch.cuda.max_memory_allocated);
       TRL   SFTTrainer packing=True (bfd, padding-free), max_length = pack length, batch 1, bf16, transformers'
             sdpa attention (no flash-attn on the machine), same tokens per step, same optimizer settings;
       estimate_memory() (xtuner_nb.train.memory) for the same setting against our measured peak.
     Activation recompute: off when estimate_memory says the run fits in 90% of the GPU, else on for every layer;
     TRL gets the same (activation checkpointing on/off).
  3. The attention self-check (forward and backward against per-sample SDPA in fp32) of every packed-attention
     kernel (torch varlen, flash-attn, block-masked SDPA, loop) in bf16 and fp16: passed, failed, refused or missing.
  4. The precision paths: a few Trainer steps of 0.6B at 2048-token packs in bf16 (sm80+) and fp16 with loss
     scaling (what a T4/V100 runs), losses, the final loss scale, and the backend the Trainer logged.
  5. The fit check: the estimate the Trainer checked before building (its `memory_estimate`) against the measured
     peak of every configuration of 2.
  Results: a table at the end of the output and $OUT/gpu_check.json (or --out).

Carrying missing packages (the GPU machine reaches no network; its python3 has torch, triton, accelerate, numpy,
pandas, safetensors, tokenizers, huggingface_hub, but transformers 5.17 and no pydantic, trl or datasets). Here, in
the repo root, once per session (`/.whl/` is already in .gitignore):

    python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
        --platform manylinux2014_x86_64 -d .whl \
        pydantic==2.14.4 pydantic-core==2.50.5 annotated-types==0.8.0 typing-inspection==0.4.5 \
        typing-extensions==4.16.0 trl==1.16.0 datasets==5.2.0 dill==0.4.1 multiprocess==0.70.19 transformers==5.24.0

(about 18 MB; the versions this project's .venv uses). datasets 5.2 needs pyarrow >= 24: gpu_check.sh prints the
machine's pyarrow; if it is older, add `pyarrow==<the .venv's version>` to the list (about 45 MB, still under the
64 MiB a call may carry). Then call the device tool's run with carry [".whl"] and the command
`bash bench/gpu_check.sh` (timeout_s 420 leaves room for the machine's start-up within the 5-minute budget of the
script itself; the script stops starting new configurations after --budget-s seconds).
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import platform
import random
import sys
import tempfile
import time
import traceback
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--smoke", action="store_true", help="CPU check of the script: tiny shapes, few steps")
    p.add_argument("--models", default="0.6B,1.7B", help="Qwen3 presets to run (0.6B, 1.7B, 4B, ...)")
    p.add_argument("--pack-lens", default="8192,16384")
    p.add_argument("--steps", type=int, default=4, help="optimizer steps per run, the first is the warm-up")
    p.add_argument("--lr", type=float, default=1e-5)
    p.add_argument("--skip-trl", action="store_true")
    p.add_argument("--trl-attn", default="sdpa", help="attn_implementation of TRL's model (sdpa, flex_attention, "
                                                      "flash_attention_2 if installed)")
    p.add_argument("--budget-s", type=float, default=270.0, help="start no new configuration after this")
    p.add_argument("--out", type=Path, default=None, help="results folder (default: $OUT or /tmp/gpu_check_out)")
    return p.parse_args(argv)


# ---- varlen attention against per-sample attention -----------------------------------------------------------------
def _lengths(total: int, rnd: random.Random, lo: int = 50, hi: int = 2000) -> list[int]:
    out = []
    while sum(out) < total:
        out.append(int(min(hi, max(lo, rnd.lognormvariate(math.log(320), 0.75)))))
    out[-1] -= sum(out) - total
    return [x for x in out if x > 0]


def varlen_check(device: str, dtype, total: int, heads: int = 16, kv_heads: int = 8, dim: int = 128,
                 seed: int = 0) -> dict:
    """Our packed attention (what the model runs) vs a higher-precision reference: output and input gradients."""
    import torch
    import torch.nn.functional as F

    from xtuner_nb.model import attention as A

    rnd = random.Random(seed)
    lens = _lengths(total, rnd, hi=min(2000, total))
    cu = torch.tensor([0] + [sum(lens[: i + 1]) for i in range(len(lens))], dtype=torch.int32, device=device)
    g = torch.Generator(device="cpu").manual_seed(seed)
    q0 = torch.randn(1, heads, total, dim, generator=g)
    k0 = torch.randn(1, kv_heads, total, dim, generator=g)
    v0 = torch.randn(1, kv_heads, total, dim, generator=g)
    grad0 = torch.randn(1, total, heads, dim, generator=g)
    scale = dim ** -0.5

    q, k, v = (t.to(device, dtype, copy=True).requires_grad_() for t in (q0, k0, v0))
    A.DISPATCHER.reset()  # a fresh choice (and self-check) for this shape and dtype
    module = SimpleNamespace(is_causal=True, layer_idx=0)
    out, _ = A.varlen_attention_forward(module, q, k, v, None, scaling=scale, cu_seq_lens_q=cu, cu_seq_lens_k=cu,
                                        max_length_q=max(lens), max_length_k=max(lens))
    backend = A.DISPATCHER.backend_in_use()
    out.backward(grad0.to(device, dtype))

    ref_dtype = torch.float64 if device == "cpu" else torch.float32
    qr, kr, vr = (t.to(device, ref_dtype, copy=True).requires_grad_() for t in (q0, k0, v0))
    if device == "cuda":  # per-sample SDPA in fp32
        reference = "per-sample SDPA, fp32"
        ref = torch.cat([F.scaled_dot_product_attention(qr[:, :, s:e], kr[:, :, s:e], vr[:, :, s:e], is_causal=True,
                                                        scale=scale, enable_gqa=True)
                         for s, e in zip(cu[:-1].tolist(), cu[1:].tolist())], dim=2)
    else:  # on CPU our path *is* per-sample SDPA, so check it against something independent: one dense masked SDPA
        reference = "block-diagonal causal mask, one SDPA, fp64"
        seg = torch.repeat_interleave(torch.arange(len(lens), device=device),
                                      torch.tensor(lens, device=device))
        pos = torch.arange(total, device=device)
        mask = (seg[:, None] == seg[None, :]) & (pos[:, None] >= pos[None, :])
        ref = F.scaled_dot_product_attention(qr, kr, vr, attn_mask=mask, scale=scale, enable_gqa=True)
    ref = ref.transpose(1, 2)  # [1, L, H, D]
    ref.backward(grad0.to(device, ref_dtype))

    def diff(a, b):
        a, b = a.detach().to(ref_dtype), b.detach()
        return {"max_abs": float((a - b).abs().max()), "rel": float((a - b).norm() / b.norm())}

    res = {"device": device, "dtype": str(dtype).removeprefix("torch."), "backend": backend, "reference": reference,
           "tokens": total,
           "samples": len(lens), "out": diff(out, ref), "dq": diff(q.grad, qr.grad), "dk": diff(k.grad, kr.grad),
           "dv": diff(v.grad, vr.grad)}
    tol = 2e-2 if dtype in (torch.bfloat16, torch.float16) else 1e-5
    res["tolerance_rel"] = tol
    res["passed"] = all(res[n]["rel"] < tol for n in ("out", "dq", "dk", "dv"))
    return res


def attention_self_checks(device: str) -> list[dict]:
    """The dispatcher's self-check for every kernel and half-precision dtype (CPU --smoke: fp32/bf16, forced)."""
    import torch

    from xtuner_nb.model.attention_kernels import SELF_CHECK_TOL, default_kernels, self_check

    dev = torch.device(device)
    dtypes = (torch.bfloat16, torch.float16) if device == "cuda" else (torch.float32, torch.bfloat16)
    out = []
    for kernel in default_kernels():
        for dtype in dtypes:
            row = {"backend": kernel.name, "dtype": str(dtype).removeprefix("torch.")}
            try:
                fn = kernel.fn()
            except (ImportError, TypeError) as exc:
                out.append({**row, "status": f"missing ({exc})"})
                continue
            probe = torch.empty(64, 16, 128, device=dev, dtype=dtype)
            refused = kernel.refuses(probe, probe[:, :8], 0.0)
            if refused and device == "cuda":
                out.append({**row, "status": f"refused: {refused}"})
                continue
            try:
                fwd, bwd = self_check(fn, dev, dtype, 16, 8, 128, None, True)
            except Exception as exc:  # noqa: BLE001 - a kernel that raises is a finding, not a crash
                out.append({**row, "status": f"raised {type(exc).__name__}: {str(exc)[:200]}"})
                continue
            tol = SELF_CHECK_TOL[dtype]
            out.append({**row, "status": "passed" if max(fwd, bwd) <= tol else "FAILED", "forward_error": fwd,
                        "backward_error": bwd, "tolerance": tol, **({"forced": refused} if refused else {})})
    return out


def precision_paths(args, wd: Path, device: str) -> list[dict]:
    """A few steps of the Trainer in bf16 and in fp16 with loss scaling (fp32/bf16 on CPU with --smoke)."""
    cfg = model_cfg_for("0.6B", args.smoke)
    pack = 512 if args.smoke else 2048
    out = []
    for precision in (("bfloat16", "float16") if device == "cuda" else ("float32", "bfloat16")):
        row = {"requested": precision, "pack_len": pack}
        try:
            res = common.run_ours(None, wd / "train.jsonl", cfg, pack_len=pack, lr=args.lr,
                                  work_dir=wd / f"precision-{precision}", tokenizer_path=wd / "tokenizer",
                                  device=device, total_step=args.steps, precision=precision)
            _free(res)
            row.update({k: res.get(k) for k in ("final_loss", "tokens_per_s", "max_memory_gb", "precision",
                                                "attention_backend", "loss_scale")})
            row["finite"] = res.get("final_loss") is not None and math.isfinite(res["final_loss"])
        except Exception as exc:  # noqa: BLE001
            row["error"] = f"{type(exc).__name__}: {exc}"
            traceback.print_exc()
        _cleanup()
        out.append(row)
    return out


# ---- one configuration ------------------------------------------------------------------------------------------
def model_cfg_for(name: str, smoke: bool):
    from xtuner_nb.model import get_model_config

    if smoke:  # tiny stand-ins with the presets' structure (GQA 2:1, q/k norms, tied embeddings)
        hidden = {"0.6B": 128, "1.7B": 192}.get(name, 128)
        return common.model_config(hidden, 2, 4096, heads=4, kv_heads=2, head_dim=32, tie=True)
    return get_model_config(f"qwen3-{name}", bos_token_id=0, eos_token_id=2, pad_token_id=0)


def run_config(name: str, pack_len: int, args, wd: Path, device: str, gpu_bytes: int | None) -> dict:
    import torch

    from xtuner_nb.train.memory import GiB, estimate_memory

    cfg = model_cfg_for(name, args.smoke)
    dtype_name = "bfloat16" if device == "cuda" else "float32"
    est0 = estimate_memory(cfg, pack_len, param_dtype=dtype_name, recompute_ratio=0.0, loss_mode="chunk",
                           world_size=1, fsdp=False)
    recompute = 0.0 if gpu_bytes is None or est0.total < 0.9 * gpu_bytes else 1.0
    est = est0 if recompute == 0.0 else estimate_memory(cfg, pack_len, param_dtype=dtype_name, recompute_ratio=1.0,
                                                        loss_mode="chunk", world_size=1, fsdp=False)
    row = {"model": name, "pack_len": pack_len, "params_B": cfg.num_params() / 1e9, "recompute_ratio": recompute,
           "estimate_gib": est.total / GiB, "estimate_without_overhead_gib": (est.total - est.overhead) / GiB,
           "estimate_parts_gib": {k: round(v, 3) for k, v in est.gib().items()}}
    data, tok = wd / "train.jsonl", wd / "tokenizer"

    def keep(res: dict, prefix: str) -> None:
        for key in ("fit_estimate_gib", "attention_backend", "precision", "tokens_per_s", "mfu", "trainer_mfu", "max_memory_gb", "peak_rss_gib", "final_loss",
                    "timed_steps", "timed_tokens", "attn_len", "model_tflops_per_s", "padding_free", "build_seconds"):
            if key in res:
                row[f"{prefix}_{key}"] = res[key]

    try:
        res = common.run_ours(None, data, cfg, pack_len=pack_len, lr=args.lr, work_dir=wd / f"ours-{name}-{pack_len}",
                              tokenizer_path=tok, device=device, recompute_ratio=recompute, total_step=args.steps)
        _free(res)
        keep(res, "ours")
    except torch.OutOfMemoryError as exc:
        row["ours_error"] = f"OOM: {str(exc).splitlines()[0]}"
    except Exception as exc:  # keep going: the other configurations still say something
        row["ours_error"] = f"{type(exc).__name__}: {exc}"
        traceback.print_exc()
    _cleanup()
    if not args.skip_trl:
        try:
            res = common.run_trl(None, data, mode="packing", pack_len=pack_len, batch_size=1, lr=args.lr,
                                 out_dir=wd / f"trl-{name}-{pack_len}", model_cfg=cfg, tokenizer_path=tok,
                                 device=device, gradient_checkpointing=recompute > 0, bf16=device == "cuda",
                                 attn_implementation=args.trl_attn, max_steps=args.steps)
            _free(res)
            keep(res, "trl")
        except torch.OutOfMemoryError as exc:
            row["trl_error"] = f"OOM: {str(exc).splitlines()[0]}"
        except Exception as exc:
            row["trl_error"] = f"{type(exc).__name__}: {exc}"
            traceback.print_exc()
        _cleanup()
    if row.get("ours_tokens_per_s") and row.get("trl_tokens_per_s"):
        row["ratio_vs_trl"] = row["ours_tokens_per_s"] / row["trl_tokens_per_s"]
    if row.get("ours_max_memory_gb"):
        row["estimate_over_measured"] = row["estimate_without_overhead_gib"] / row["ours_max_memory_gb"]
        if row.get("ours_fit_estimate_gib"):  # what the Trainer's fit check compared with the free memory
            row["fit_estimate_over_measured"] = row["ours_fit_estimate_gib"] / row["ours_max_memory_gb"]
    return row


def _free(res: dict) -> None:
    trainer = res.pop("trainer", None)
    res.pop("model", None)
    if trainer is not None and hasattr(trainer, "close"):
        trainer.close()
    elif trainer is not None:  # HF Trainer: drop the references that hold GPU memory
        if getattr(trainer, "accelerator", None) is not None:
            trainer.accelerator.free_memory()
        trainer.model = trainer.model_wrapped = trainer.optimizer = trainer.lr_scheduler = None


def _cleanup() -> None:
    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


# ---- report -------------------------------------------------------------------------------------------------------
def _f(x, spec: str, missing: str = "-") -> str:
    return missing if x is None else format(x, spec)


def print_table(rows: list[dict], check: dict | None, env: dict, smoke: bool = False) -> None:
    print()
    print(f"device: {env['device']}  torch {env['torch']}  transformers {env['transformers']}  trl {env['trl']}")
    if check:
        c = check
        print(f"varlen attention ({c['backend']}, {c['dtype']}, {c['samples']} samples / {c['tokens']} tokens) vs "
              f"{c['reference']}: out max abs {c['out']['max_abs']:.2e} rel {c['out']['rel']:.2e}; "
              f"dq rel {check['dq']['rel']:.2e}, dk rel {check['dk']['rel']:.2e}, dv rel {check['dv']['rel']:.2e} "
              f"-> {'PASS' if check['passed'] else 'FAIL'} (rel < {check['tolerance_rel']})")
    head = (f"{'model':>5} {'pack':>6} {'rc':>3} {'ours tok/s':>11} {'MFU':>6} {'(trainer)':>9} {'peak GiB':>8} "
            f"{'est GiB':>8} {'est/peak':>8} {'TRL tok/s':>10} {'TRL MFU':>7} {'TRL GiB':>7} {'ratio':>6}")
    print(head)
    print("-" * len(head))
    for r in rows:
        print(f"{r['model']:>5} {r['pack_len']:>6} {r['recompute_ratio']:>3.0f} "
              f"{_f(r.get('ours_tokens_per_s'), '11.0f', r.get('ours_error', '-')[:11]):>11} "
              f"{_f(r.get('ours_mfu'), '6.1%'):>6} {_f(r.get('ours_trainer_mfu'), '9.1%'):>9} "
              f"{_f(r.get('ours_max_memory_gb'), '8.2f'):>8} {r['estimate_without_overhead_gib']:>8.2f} "
              f"{_f(r.get('estimate_over_measured'), '8.2f'):>8} "
              f"{_f(r.get('trl_tokens_per_s'), '10.0f', r.get('trl_error', '-')[:10]):>10} "
              f"{_f(r.get('trl_mfu'), '7.1%'):>7} {_f(r.get('trl_max_memory_gb'), '7.2f'):>7} "
              f"{_f(r.get('ratio_vs_trl'), '5.2f'):>5}x")
    print("rc = recompute ratio; est = estimate_memory() without its 1 GiB CUDA-context allowance "
          "(max_memory_allocated does not see the context); peak GiB = largest per-step "
          "torch.cuda.max_memory_allocated (CUDA only)")
    if smoke:
        print("--smoke: tiny shapes on CPU, to show the script works; its speed figures say nothing about the targets")
        return
    for r in rows:  # the issue's targets: MFU >= 40% for 1.7B at 8k packs, >= 1.3x TRL padding-free everywhere
        if r["model"] == "1.7B" and r["pack_len"] == 8192 and r.get("ours_mfu") is not None:
            ok = r["ours_mfu"] >= 0.40
            print(f"target MFU >= 40% (1.7B, 8k): {r['ours_mfu']:.1%} -> {'met' if ok else 'MISSED'}")
        if r.get("ratio_vs_trl") is not None:
            print(f"target >= 1.3x TRL padding-free ({r['model']}, {r['pack_len']}): {r['ratio_vs_trl']:.2f}x -> "
                  f"{'met' if r['ratio_vs_trl'] >= 1.3 else 'MISSED'}")


def main(argv=None) -> int:
    args = parse_args(argv)
    t_start = time.perf_counter()
    import torch

    device = "cuda" if torch.cuda.is_available() and not args.smoke else "cpu"
    if device == "cpu" and not args.smoke:
        print("no CUDA device: running the --smoke configuration on CPU")
        args.smoke = True
    if args.smoke:
        args.pack_lens = "512,1024"
        args.steps = min(args.steps, 3)
    out_dir = args.out or Path(os.environ.get("OUT") or "/tmp/gpu_check_out")
    out_dir.mkdir(parents=True, exist_ok=True)
    env = {"device": torch.cuda.get_device_name(0) if device == "cuda" else f"CPU ({platform.machine()})",
           "torch": torch.__version__, "python": platform.python_version()}
    for mod in ("transformers", "trl", "datasets", "pydantic"):
        try:
            env[mod] = __import__(mod).__version__
        except Exception as exc:
            env[mod] = f"missing ({type(exc).__name__})"
    print(json.dumps(env), flush=True)

    wd = Path(tempfile.mkdtemp(prefix="gpu_check-"))
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    pack_lens = sorted(int(x) for x in args.pack_lens.split(","))
    # data: enough packs of the longest length for every run (ours and TRL pack differently: a 40% margin)
    from transformers import AutoTokenizer

    common.make_tokenizer(wd / "tokenizer", vocab_size=4096 if args.smoke else 8192, corpus_words=150_000)
    tok = AutoTokenizer.from_pretrained(str(wd / "tokenizer"))
    need = int(args.steps * max(pack_lens) * 1.4)
    max_len = min(2000, min(pack_lens) - 8)
    n = max(16, need // 380)
    lengths = common.make_sft_jsonl(wd / "train.jsonl", tok, n, seed=0, max_len=max_len)
    while sum(lengths) < need:  # the log-normal draw came out short: add more conversations
        extra = common.make_sft_jsonl(wd / "more.jsonl", tok, n // 4 + 1, seed=len(lengths), max_len=max_len)
        with open(wd / "train.jsonl", "a") as f:
            f.write((wd / "more.jsonl").read_text())
        lengths += extra
    print(f"setup: {len(lengths)} conversations, {sum(lengths)} tokens, median length "
          f"{sorted(lengths)[len(lengths) // 2]} ({time.perf_counter() - t_start:.0f} s)", flush=True)

    results: dict = {"env": env, "args": {k: str(v) for k, v in vars(args).items()}, "rows": []}
    check = None
    try:
        check = varlen_check(device, torch.bfloat16 if device == "cuda" else torch.float32,
                             total=8192 if device == "cuda" else 1024,
                             **({} if device == "cuda" else {"heads": 4, "kv_heads": 2, "dim": 32}))
        print(f"varlen check: {json.dumps(check)}", flush=True)
    except Exception as exc:
        traceback.print_exc()
        check = None
        results["varlen_error"] = f"{type(exc).__name__}: {exc}"
    results["varlen_check"] = check
    _cleanup()
    results["attention_self_checks"] = attention_self_checks(device)
    for r in results["attention_self_checks"]:
        print(f"attention self-check: {json.dumps(r)}", flush=True)
    _cleanup()
    results["precision_paths"] = precision_paths(args, wd, device)
    for r in results["precision_paths"]:
        print(f"precision path: {json.dumps(r)}", flush=True)

    gpu_bytes = torch.cuda.get_device_properties(0).total_memory if device == "cuda" else None
    skipped = []
    for pack_len in pack_lens:  # shortest packs first: if the budget runs out, the 8k results (targets) exist
        for name in models:
            if time.perf_counter() - t_start > args.budget_s:
                skipped.append(f"{name}@{pack_len}")
                continue
            t0 = time.perf_counter()
            row = run_config(name, pack_len, args, wd, device, gpu_bytes)
            row["seconds"] = time.perf_counter() - t0
            results["rows"].append(row)
            print(f"config: {json.dumps(row)}", flush=True)
            (out_dir / "gpu_check.json").write_text(json.dumps(results, indent=1))
    results["skipped_over_budget"] = skipped
    results["elapsed_seconds"] = time.perf_counter() - t_start
    (out_dir / "gpu_check.json").write_text(json.dumps(results, indent=1))
    print_table(results["rows"], check, env, smoke=args.smoke)
    for r in results["rows"]:
        if r.get("fit_estimate_over_measured"):
            print(f"fit check {r['model']}@{r['pack_len']}: the Trainer's estimate {r['ours_fit_estimate_gib']:.2f} "
                  f"GiB vs measured peak {r['ours_max_memory_gb']:.2f} GiB ({r['fit_estimate_over_measured']:.2f}x)")
    if skipped:
        print(f"skipped (over --budget-s {args.budget_s:.0f}): {', '.join(skipped)}")
    print(f"whole run: {results['elapsed_seconds']:.0f} s; results in {out_dir / 'gpu_check.json'}")
    failed = (check is not None and not check["passed"]) or any("ours_error" in r for r in results["rows"]) \
        or any(r["status"] in ("FAILED",) for r in results["attention_self_checks"]) \
        or any("error" in r or not r.get("finite") for r in results["precision_paths"])
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
