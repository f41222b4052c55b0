"""Kernels for packed attention, and the dispatcher that picks one that is present, accepts the call and is right.

Every kernel takes flat tokens q [T, Hq, D], k/v [T, Hkv, D] and int32 cumulative sample lengths, and returns
[T, Hq, D]. In order of preference:

1. `torch`: `torch.nn.attention.varlen.varlen_attn` (flash kernel shipped with torch >= 2.10). Its keywords
   changed between releases, so the call is built from the installed signature: 2.10 takes `is_causal=`, 2.11
   `window_size=` without `enable_gqa` (kv heads are then repeated), 2.12+ `window_size=` and `enable_gqa=`.
2. `flash_attn`: `flash_attn_varlen_func` of the flash-attn package.
3. `sdpa_block`: one SDPA call with a block-diagonal causal boolean mask (T*T bytes, so only for T <= 8192).
4. `loop`: one exact SDPA per sample. Accepts everything; the reference of the self-check.

The dispatcher falls back to the next kernel when one is missing (import), refuses the device, dtype or head size,
or raises on its first call. On the first CUDA call of a (device, dtype, dropout) combination it also runs a
numerical self-check: forward and backward of the chosen kernel against per-sample SDPA in fp32 on a small packed
slice with the layer's head shape; on a mismatch it warns and falls back. `backend_in_use()` names the kernel.
"""

from __future__ import annotations

import inspect
import logging
import os
import warnings
from dataclasses import dataclass, field
from typing import Callable

import torch
import torch.nn.functional as F

log = logging.getLogger("xtuner_nb")

# fn(q, k, v, cu_q, cu_k, max_q, max_k, scale, causal, dropout) -> out [T, Hq, D]
KernelFn = Callable[..., torch.Tensor]
BLOCK_MASK_MAX_TOKENS = 8192  # a [T, T] bool mask of 64 MiB
# max |kernel - reference| / max |reference| accepted by the self-check, per dtype of the kernel's inputs
SELF_CHECK_TOL = {torch.float32: 1e-4, torch.float16: 1e-2, torch.bfloat16: 3e-2}
SELF_CHECK_LENGTHS = (37, 1, 64, 17)


@dataclass
class Kernel:
    name: str
    load: Callable[[], KernelFn]  # raises ImportError when the kernel is not installed
    refuses: Callable[[torch.Tensor, torch.Tensor, float], str | None] = lambda q, k, dropout: None
    _fn: KernelFn | None = field(default=None, repr=False)

    def fn(self) -> KernelFn:
        if self._fn is None:
            self._fn = self.load()
        return self._fn


# ---- the kernels -----------------------------------------------------------------------------------------------
def repeat_kv(k: torch.Tensor, hq: int) -> torch.Tensor:
    """[T, Hkv, D] -> [T, Hq, D], each kv head repeated for its group of query heads (GQA without enable_gqa)."""
    return k if k.shape[1] == hq else k.repeat_interleave(hq // k.shape[1], dim=1)


def adapt_torch_varlen(varlen_attn: Callable) -> KernelFn:
    """Wrap `varlen_attn` of any released signature (2.10: is_causal; 2.11: window_size; 2.12+: enable_gqa)."""
    params = inspect.signature(varlen_attn).parameters
    if "window_size" not in params and "is_causal" not in params:
        raise TypeError(f"unknown varlen_attn signature {inspect.signature(varlen_attn)}: neither window_size= "
                        "nor is_causal=")
    gqa_flag = "enable_gqa" in params

    def call(q, k, v, cu_q, cu_k, max_q, max_k, scale, causal, dropout):
        kw = {"scale": scale} if "scale" in params else {}
        if "window_size" in params:
            kw["window_size"] = (-1, 0) if causal else (-1, -1)
        else:
            kw["is_causal"] = causal
        if k.shape[1] != q.shape[1]:
            if gqa_flag:
                kw["enable_gqa"] = True
            else:
                k, v = repeat_kv(k, q.shape[1]), repeat_kv(v, q.shape[1])
        return varlen_attn(q, k, v, cu_q, cu_k, max_q, max_k, **kw)

    return call


def _load_torch_varlen() -> KernelFn:
    from torch.nn.attention.varlen import varlen_attn

    return adapt_torch_varlen(varlen_attn)


def _load_flash_attn() -> KernelFn:
    from flash_attn import flash_attn_varlen_func

    def call(q, k, v, cu_q, cu_k, max_q, max_k, scale, causal, dropout):
        return flash_attn_varlen_func(q, k, v, cu_q, cu_k, max_q, max_k, dropout_p=dropout, softmax_scale=scale,
                                      causal=causal)

    return call


def sdpa_block(q, k, v, cu_q, cu_k, max_q, max_k, scale, causal, dropout):
    """One SDPA over the whole pack with a block-diagonal (and causal) mask; q and k have the same boundaries."""
    t = q.shape[0]
    seg = torch.repeat_interleave(torch.arange(cu_q.numel() - 1, device=q.device), cu_q.diff().long(),
                                  output_size=t)
    mask = seg[:, None] == seg[None, :]
    if causal:
        mask = mask.tril()
    out = F.scaled_dot_product_attention(q.transpose(0, 1)[None], k.transpose(0, 1)[None], v.transpose(0, 1)[None],
                                         attn_mask=mask, dropout_p=dropout, scale=scale,
                                         enable_gqa=k.shape[1] != q.shape[1])
    return out[0].transpose(0, 1)


def loop_attention(q, k, v, cu_q, cu_k, max_q, max_k, scale, causal, dropout):
    """Exact reference path: one SDPA per sample on [1, H, len, D] slices; gradients flow through the slices."""
    bounds_q, bounds_k = cu_q.tolist(), cu_k.tolist()
    gqa = k.shape[1] != q.shape[1]
    outs = []
    for i in range(len(bounds_q) - 1):
        sq, eq, sk, ek = bounds_q[i], bounds_q[i + 1], bounds_k[i], bounds_k[i + 1]
        if eq == sq:
            continue
        qi, ki, vi = (t.transpose(0, 1).unsqueeze(0) for t in (q[sq:eq], k[sk:ek], v[sk:ek]))
        # is_causal is upper-left aligned in SDPA; q and k of one sample have the same length in a pack
        oi = F.scaled_dot_product_attention(qi, ki, vi, dropout_p=dropout, scale=scale,
                                            is_causal=causal and eq - sq > 1, enable_gqa=gqa)
        outs.append(oi.squeeze(0).transpose(0, 1))
    return torch.cat(outs, dim=0)


def _flash_refuses(q, k, dropout, *, needs_no_dropout: bool) -> str | None:
    if not q.is_cuda:
        return "needs a CUDA tensor"
    if q.dtype not in (torch.float16, torch.bfloat16):
        return f"needs fp16/bf16, got {q.dtype}"
    if q.shape[-1] > 256:
        return f"head_dim {q.shape[-1]} > 256"
    if needs_no_dropout and dropout:
        return "computes no dropout"
    if torch.cuda.get_device_capability(q.device) < (8, 0):
        return "flash kernels need sm80 (Ampere) or newer"
    return None


def _block_refuses(q, k, dropout) -> str | None:
    if not q.is_cuda:  # on CPU the loop does less work: sum(l_i^2) instead of T^2 (and it is the exact reference)
        return "CPU: the per-sample loop does less work"
    return f"{q.shape[0]} tokens > {BLOCK_MASK_MAX_TOKENS} (the mask is T*T)" if q.shape[0] > BLOCK_MASK_MAX_TOKENS \
        else None


def default_kernels() -> list[Kernel]:
    return [Kernel("torch", _load_torch_varlen, lambda q, k, d: _flash_refuses(q, k, d, needs_no_dropout=True)),
            Kernel("flash_attn", _load_flash_attn, lambda q, k, d: _flash_refuses(q, k, d, needs_no_dropout=False)),
            Kernel("sdpa_block", lambda: sdpa_block, _block_refuses),
            Kernel("loop", lambda: loop_attention)]


# ---- the self-check ----------------------------------------------------------------------------------------------
def self_check(fn: KernelFn, device: torch.device, dtype: torch.dtype, hq: int, hkv: int, head_dim: int,
               scale: float | None, causal: bool) -> tuple[float, float]:
    """(forward error, backward error) of `fn` against per-sample SDPA in fp32, relative to the reference's max."""
    lengths = torch.tensor(SELF_CHECK_LENGTHS)
    cu = torch.cat([torch.zeros(1, dtype=torch.int64), lengths.cumsum(0)]).to(device=device, dtype=torch.int32)
    t, m = int(lengths.sum()), int(lengths.max())
    g = torch.Generator(device="cpu").manual_seed(0)
    base = [torch.randn(t, h, head_dim, generator=g) for h in (hq, hkv, hkv)]
    grad_out = torch.randn(t, hq, head_dim, generator=g).to(device)

    def run(kernel, dt):
        leaves = [x.to(device=device, dtype=dt, copy=True).requires_grad_() for x in base]
        out = kernel(*leaves, cu, cu, m, m, scale, causal, 0.0)
        (out.float() * grad_out).sum().backward()
        return out.detach().float(), [x.grad.float() for x in leaves]

    with torch.enable_grad(), torch.autocast(device.type, enabled=False):
        out, grads = run(fn, dtype)
        ref_out, ref_grads = run(loop_attention, torch.float32)

    def rel(a, b):
        return float((a - b).abs().max() / b.abs().max().clamp_min(1e-6))

    if out.shape != ref_out.shape:
        return float("inf"), float("inf")
    return rel(out, ref_out), max(rel(a, b) for a, b in zip(grads, ref_grads))


# ---- the dispatcher ----------------------------------------------------------------------------------------------
class AttentionDispatcher:
    """Chooses a kernel per (device, dtype, dropout?) on its first call, then reuses it.

    `check_on_cpu=True` runs the self-check on CPU too (tests drive stand-in kernels with it)."""

    def __init__(self, kernels: list[Kernel] | None = None, check_on_cpu: bool = False):
        self.kernels = kernels if kernels is not None else default_kernels()
        self.check_on_cpu = check_on_cpu
        self.chosen: dict[tuple, Kernel] = {}
        self.notes: list[str] = []  # why each kernel was passed over, and the self-check figures

    def reset(self) -> None:
        self.chosen.clear()
        self.notes.clear()

    def backend_in_use(self) -> str | None:
        """The kernel(s) chosen so far, e.g. 'torch' (None before the first packed forward)."""
        names = sorted({k.name for k in self.chosen.values()})
        return ", ".join(names) if names else None

    def __call__(self, q, k, v, cu_q, cu_k, max_q, max_k, scale, causal, dropout) -> torch.Tensor:
        key = (q.device, q.dtype, bool(dropout))
        kernel = self.chosen.get(key)
        if kernel is not None:
            return kernel.fn()(q, k, v, cu_q, cu_k, max_q, max_k, scale, causal, dropout)
        for kernel in self._candidates():
            why = self._try(kernel, q, k, scale, causal, dropout)
            if why is not None:
                self._passed_over(kernel, why, warn=why.startswith(("raised", "self-check")))
                continue
            try:  # the first real call: a kernel that raises here is passed over too
                out = kernel.fn()(q, k, v, cu_q, cu_k, max_q, max_k, scale, causal, dropout)
            except torch.OutOfMemoryError:
                raise
            except Exception as exc:  # noqa: BLE001 - any failure of an optional kernel means: use the next one
                self._passed_over(kernel, f"raised {type(exc).__name__}: {exc}", warn=True)
                continue
            self.chosen[key] = kernel
            log.info(f"packed attention backend: {kernel.name} ({q.device.type}, {q.dtype})")
            return out
        raise RuntimeError(f"no packed attention kernel accepted this call: {'; '.join(self.notes)}")

    def _candidates(self) -> list[Kernel]:
        forced = os.environ.get("XTUNER_NB_VARLEN_BACKEND", "auto")
        names = [k.name for k in self.kernels]
        if forced == "auto":
            return self.kernels
        if forced not in names:
            raise ValueError(f"XTUNER_NB_VARLEN_BACKEND={forced!r}; choose one of {['auto', *names]}")
        return [k for k in self.kernels if k.name == forced]

    def _try(self, kernel: Kernel, q, k, scale, causal, dropout) -> str | None:
        """None when `kernel` may be used, else why not (missing, refused, raised or wrong in the self-check)."""
        try:
            fn = kernel.fn()
        except (ImportError, TypeError) as exc:
            return f"not available ({exc})"
        refused = kernel.refuses(q, k, dropout)
        if refused:
            return f"refused: {refused}"
        if kernel.name == "loop" or not (q.is_cuda or self.check_on_cpu):
            return None
        try:
            fwd, bwd = self_check(fn, q.device, q.dtype, q.shape[1], k.shape[1], q.shape[2], scale, causal)
        except torch.OutOfMemoryError:
            raise
        except Exception as exc:  # noqa: BLE001
            return f"raised {type(exc).__name__} in the self-check: {exc}"
        tol = SELF_CHECK_TOL.get(q.dtype, 3e-2)
        verdict = f"forward error {fwd:.2e}, backward error {bwd:.2e} (tolerance {tol:g}, {q.dtype})"
        if not (fwd <= tol and bwd <= tol):
            return f"self-check failed: {verdict} against per-sample SDPA"
        self.notes.append(f"{kernel.name}: self-check passed, {verdict}")
        return None

    def _passed_over(self, kernel: Kernel, why: str, warn: bool) -> None:
        note = f"{kernel.name}: {why}"
        self.notes.append(note)
        if warn:
            warnings.warn(f"packed attention: {note}; falling back to the next kernel", RuntimeWarning, stacklevel=3)
        else:
            log.debug(f"packed attention: {note}")


DISPATCHER = AttentionDispatcher()


def probe_backend(device: torch.device, dtype: torch.dtype, hq: int = 2, hkv: int = 1,
                  head_dim: int = 128) -> tuple[str, list[str]]:
    """The kernel a fresh dispatcher picks for a small packed call on `device` in `dtype` (self-check included on
    CUDA), and why the others were passed over. What `env_report` shows; the live DISPATCHER is left untouched."""
    probe = AttentionDispatcher([Kernel(k.name, k.load, k.refuses) for k in DISPATCHER.kernels])
    cu = torch.tensor([0, 5, 8], dtype=torch.int32, device=device)
    q, k, v = (torch.randn(8, h, head_dim, device=device, dtype=dtype) for h in (hq, hkv, hkv))
    with warnings.catch_warnings():  # a passed-over kernel is part of the answer here, not a warning
        warnings.simplefilter("ignore")
        probe(q, k, v, cu, cu, 5, 5, head_dim ** -0.5, True, 0.0)
    return probe.backend_in_use() or "none", probe.notes
