"""`xtuner_nb.env_report()` / `xtuner-nb env`: what this kernel has for training, on one screen, a fix per problem.

Torch and its CUDA build, the GPU (bf16/fp16, free memory), the precision and the packed-attention kernel training
will use (asked from train/precision.py and model/attention_kernels.py, so the report follows their choices), ipywidgets and
the notebook front end, and optionally whether a checkpoint folder is readable.
"""

from __future__ import annotations

import json
import os
import platform
import re
import shutil
import sys
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

_GIB = 1024 ** 3
# Where files survive a runtime restart on hosted notebooks (the install page says more).
_PERSIST_HINT = ("on Colab only /content/drive (Google Drive, mounted) survives a runtime reset; on Kaggle only "
                 "/kaggle/working is saved with a notebook version")


@dataclass
class Check:
    name: str
    value: str
    problem: bool = False
    fix: str | None = None  # for a problem: what to do; otherwise an optional tip


@dataclass(repr=False)
class EnvReport:
    checks: list[Check]

    @property
    def problems(self) -> list[Check]:
        return [c for c in self.checks if c.problem]

    def __str__(self) -> str:
        n = len(self.problems)
        lines = [f"xtuner_nb environment: {'no problems' if not n else f'{n} problem' + 's' * (n > 1)}"]
        for c in self.checks:
            lines.append(f"{'✗' if c.problem else '✓'} {c.name:<12} {c.value}")
            if c.fix:
                lines.append(f"  {'fix' if c.problem else 'tip'}: {c.fix}")
        return "\n".join(lines)

    __repr__ = __str__  # a notebook cell ending in env_report() shows the text


def env_report(checkpoint: str | os.PathLike | None = None) -> EnvReport:
    """Check this Python for training; `checkpoint`: also check that this model folder is readable."""
    import torch

    import xtuner_nb

    checks = [Check("python", f"{platform.python_version()}  {sys.executable}"),
              Check("xtuner_nb", f"{xtuner_nb.__version__}  {Path(xtuner_nb.__file__).parent}"),
              _torch_check(torch), Check("transformers", _version("transformers") or "not installed"),
              _versions_check()]
    device = torch.device("cuda", 0) if torch.cuda.is_available() else torch.device("cpu")
    checks += _device_checks(torch, device)
    precision = training_precision(device)
    checks.append(precision_check(precision))
    checks.append(_attention_check(device, precision.compute))
    checks.append(_widgets_check())
    if checkpoint is not None:
        checks.append(_checkpoint_check(Path(checkpoint).expanduser()))
    else:
        checks.append(Check("checkpoint", "not checked (env_report('path/to/model') or xtuner-nb env --checkpoint)"))
    return EnvReport(checks)


def training_precision(device, capability: tuple[int, int] | None = None):
    """The precision the Trainer uses on `device` with its default config: train/precision.py decides, for the
    Trainer too (`capability` plans for another GPU, e.g. (7, 5) for a T4)."""
    from .config import FSDPConfig
    from .train.precision import choose_precision

    return choose_precision(FSDPConfig(), device, capability)


def attention_backend(device, dtype) -> str:
    """The kernel the packed attention dispatcher picks for a Qwen3-shaped call (head_dim 128, GQA) on `device` in
    `dtype` (model/attention_kernels.py decides, running the kernel and, on CUDA, its self-check)."""
    from .model.attention_kernels import probe_backend

    return probe_backend(device, dtype)[0]


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _versions_check() -> Check:
    """This kernel's versions against the ones the version matrix passed (xtuner_nb/versions.py)."""
    from .versions import TESTED, outside_tested

    installed = {name: _version(name) for name in TESTED if name != "python"}
    outside = outside_tested({"python": platform.python_version(), **installed})
    if not outside:
        return Check("versions", "inside the tested ranges (python, " + ", ".join(installed) + ")")
    return Check("versions", "outside the tested ranges: " + "; ".join(outside), True,
                 "not tested, though it may work; if something fails, install versions inside the ranges shown "
                 "(the install page lists them) and restart the kernel")


def _has_nvidia_driver() -> bool:
    return Path("/proc/driver/nvidia/version").exists() or shutil.which("nvidia-smi") is not None


def _torch_check(torch) -> Check:
    build = f"CUDA {torch.version.cuda} build" if torch.version.cuda else "CPU build"
    if not torch.version.cuda and _has_nvidia_driver():
        return Check("torch", f"{torch.__version__} ({build}), but this machine has an NVIDIA driver", True,
                     "install a CUDA build of torch (the command from pytorch.org/get-started), restart the kernel")
    return Check("torch", f"{torch.__version__} ({build})")


def _device_checks(torch, device) -> list[Check]:
    if device.type == "cpu":
        checks = [Check("gpu", "none: training runs on the CPU (fine for the tiny tutorial model only)",
                        fix=_no_gpu_fix(torch))]
        free, total = _ram()
        if free is not None:
            low = free < 2 * _GIB
            checks.append(Check("memory", f"{free / _GIB:.1f} GiB RAM free of {total / _GIB:.1f} GiB", low,
                                "close other notebooks or restart idle kernels" if low else None))
        return checks
    n = torch.cuda.device_count()
    name, (major, minor) = torch.cuda.get_device_name(0), torch.cuda.get_device_capability(0)
    bf16 = torch.cuda.is_bf16_supported(including_emulation=False)
    value = (f"{name} (sm_{major}{minor}){f', {n} GPUs' if n > 1 else ''}; bf16 {'yes' if bf16 else 'no'}, "
             f"fp16 {'yes' if (major, minor) >= (5, 3) else 'no'}")
    gpu = Check("gpu", value)
    arch, archs = f"sm_{major}{minor}", torch.cuda.get_arch_list()
    # portable PTX of an older architecture ("compute_80"; not "compute_90a") is compiled for this GPU on load
    ptx = [int(m.group(1)) for m in (re.fullmatch(r"compute_(\d+)", a) for a in archs) if m]
    ptx_ok = any(v <= major * 10 + minor for v in ptx)
    if arch not in archs and not ptx_ok:
        gpu = Check("gpu", value + f"; this torch has no kernels for {arch} ({' '.join(archs)})", True,
                    "install a torch build that supports this GPU (pytorch.org/get-started/previous-versions) or "
                    "pick another GPU")
    free, total = torch.cuda.mem_get_info(0)
    held = torch.cuda.memory_reserved(0)
    elsewhere = total - free - held
    fix = None
    if free < 0.8 * total:
        fix = (f"this kernel holds {held / _GIB:.1f} GiB: restart it (Kernel > Restart) to free it" if held >= elsewhere
               else f"other processes hold {elsewhere / _GIB:.1f} GiB (nvidia-smi lists them; an idle notebook "
                    "kernel? shut it down)")
    mem = Check("memory", f"{free / _GIB:.1f} GiB free of {total / _GIB:.1f} GiB on GPU 0"
                          f" ({held / _GIB:.1f} GiB held by this kernel)", fix is not None, fix)
    return [gpu, mem]


def _no_gpu_fix(torch) -> str | None:
    if "google.colab" in sys.modules:
        return "Runtime > Change runtime type > a GPU (T4, L4 or A100), then run the notebook again"
    if "KAGGLE_KERNEL_RUN_TYPE" in os.environ:
        return "Settings > Accelerator > GPU (T4 x2 or P100), then run the notebook again"
    if torch.version.cuda:
        return "this CUDA build sees no GPU: check nvidia-smi and CUDA_VISIBLE_DEVICES"
    return None


def _ram() -> tuple[int | None, int | None]:
    from .train.memory import host_memory  # what the fit check counts as available

    try:
        return host_memory()
    except (OSError, KeyError, ValueError):
        return None, None


def precision_check(precision) -> Check:
    """What the Trainer will compute in, as its own log line says it (`Precision.describe`)."""
    return Check("precision", precision.describe().removeprefix("precision: "))


_WHY = {
    "torch": "torch's own varlen flash kernel (CUDA sm_80+, fp16/bf16)",
    "flash_attn": "flash-attn's varlen kernel (torch's own is not available here)",
    "sdpa_block": "block-masked SDPA over each pack (no fused varlen kernel passed here; CUDA, packs up to 8k)",
    "loop": "one exact SDPA call per packed sample (no fused varlen kernel for this device and dtype)",
}


def _attention_check(device, dtype) -> Check:
    try:
        backend = attention_backend(device, dtype)
    except Exception as exc:  # the report must still print when a backend probe breaks
        return Check("attention", f"could not ask model/attention.py: {exc!r}", True,
                     "report this with the output of xtuner-nb env")
    forced = os.environ.get("XTUNER_NB_VARLEN_BACKEND", "auto")
    why = f"forced by XTUNER_NB_VARLEN_BACKEND={forced}" if forced != "auto" else _WHY.get(backend, "")
    value = f"{backend}: {why}" if why else backend
    if device.type == "cuda" and backend == "loop" and forced == "auto":
        return Check("attention", value, True,
                     "packed training is slower on this GPU; an sm_80+ GPU (A100, L4, H100) gets the fused kernel")
    return Check("attention", value)


def _frontend() -> str | None:
    """The notebook front end this kernel talks to, guessed from its modules and environment; None outside one."""
    from .train.logs import in_notebook_kernel

    if "google.colab" in sys.modules:
        return "Colab"
    if not in_notebook_kernel():
        return None
    if "KAGGLE_KERNEL_RUN_TYPE" in os.environ:
        return "Kaggle"
    if "VSCODE_PID" in os.environ or "VSCODE_CWD" in os.environ:
        return "VS Code"
    if "JUPYTERHUB_USER" in os.environ:
        return "JupyterHub"
    return "Jupyter"


def _widgets_check() -> Check:
    widgets, front = _version("ipywidgets"), _frontend()
    where = f"front end: {front}" if front else "front end: none (not in a Jupyter kernel)"
    if widgets is None:
        return Check("widgets", f"ipywidgets not installed ({where}): no forms, the dashboard prints log lines",
                     bool(front), '%pip install "xtuner_nb[kernel]", then restart the kernel')
    value, major = f"ipywidgets {widgets}, {where}", int(widgets.split(".")[0])
    if front == "Colab" and major >= 8:
        return Check("widgets", value, fix="if forms or the dashboard do not draw, run once: "
                     "from google.colab import output; output.enable_custom_widget_manager()")
    if front in ("Jupyter", "JupyterHub"):
        lab = _version("jupyterlab_widgets")
        if lab is None:
            return Check("widgets", value, fix="JupyterLab draws widgets with jupyterlab_widgets, installed where "
                         "the server runs (not visible from here); if widgets show as text, install it there")
        if (major >= 8) != (int(lab.split(".")[0]) >= 3):  # ipywidgets 8 <-> jupyterlab_widgets 3, 7 <-> 1
            return Check("widgets", f"{value}; jupyterlab_widgets {lab} does not match", True,
                         f'pip install "jupyterlab_widgets{">=3" if major >= 8 else "<2"}" where JupyterLab runs, '
                         "then reload the page")
        return Check("widgets", f"{value} (jupyterlab_widgets {lab})")
    return Check("widgets", value)


def _checkpoint_check(path: Path) -> Check:
    def bad(what: str, fix: str) -> Check:
        return Check("checkpoint", f"{path}: {what}", True, fix)

    if not path.exists():
        return bad("not found", f"give the folder holding config.json and *.safetensors; {_PERSIST_HINT}")
    if not path.is_dir():
        return bad("is a file", "give the folder that holds it (config.json, *.safetensors, tokenizer files)")
    from safetensors import SafetensorError, safe_open

    try:
        config = json.loads((path / "config.json").read_text(encoding="utf-8"))
        shards = sorted(path.glob("*.safetensors"))
        tensors = 0
        for shard in shards:
            with safe_open(str(shard), "pt") as f:
                tensors += len(list(f.keys()))
    except FileNotFoundError:
        return bad("no config.json", "give the Hugging Face model folder (the one with config.json in it)")
    except PermissionError as exc:
        return bad(f"not readable: {exc.filename}", f"chmod -R a+rX {path} (or copy it somewhere you can read)")
    except (ValueError, OSError, SafetensorError) as exc:  # bad json, a truncated safetensors header
        return bad(f"cannot read it: {exc}", "the download may be incomplete: fetch the files again")
    if not shards:
        return bad("no *.safetensors files", "save the weights as safetensors "
                   "(model.save_pretrained(folder, safe_serialization=True))")
    if not any((path / name).exists() for name in ("tokenizer.json", "tokenizer_config.json")):
        return bad("no tokenizer files", "copy the tokenizer files in, or pass tokenizer_path= to TrainerConfig")
    size = sum(s.stat().st_size for s in shards) / _GIB
    model_type = config.get("model_type", "?")
    value = f"{path}: {model_type}, {len(shards)} safetensors file(s), {tensors} tensors, {size:.2f} GiB, tokenizer"
    if model_type != "qwen3":
        return Check("checkpoint", value, True, "xtuner_nb trains Qwen3 dense models; pick a Qwen3 checkpoint")
    return Check("checkpoint", value)
