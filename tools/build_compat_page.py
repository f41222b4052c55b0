"""Write the generated tables of docs/en/xtuner_compat.md and docs/zh_cn/xtuner_compat.md.

One row per XTuner v1 public name (from `tools/xtuner_v1_names.json`, read from XTuner's source) compared with this
code base (imported): module paths, package names, the public methods of its classes, config fields with their
defaults, and `xtuner sft` CLI flags. A callable is "same" only when its signature is (parameter names, order,
kinds, defaults: `compat_signatures.py`); "compatible, extended" when every XTuner call binds the same way here.
A name importable here that refuses to be used (`xtuner_nb._unsupported`) is "not supported" with its reason.
A field's status comes from the field itself: `refused_unless_default` fields are "not supported" with their reason,
`compat_field` fields are "accepted, no effect" with theirs (both markers of `xtuner_nb.config.base`), a different
default is "different".
The zh_cn page's notes come from `tools/compat_notes_zh_cn.py`; a note with no translation stops this script.
`tests/compat/test_xtuner_compat.py` fails while a page is stale:

    .venv/bin/python tools/build_compat_page.py
"""

from __future__ import annotations

import importlib
import json
import re
from pathlib import Path
from typing import Any

from compat_notes_zh_cn import NOTES_ZH_CN  # tools/ is on the path: run as a script, or imported by the test
from compat_signatures import DIFFERENT_NOTE, EXTENDED_NOTE, compare, our_params

ROOT = Path(__file__).resolve().parents[1]
NAMES = json.loads((ROOT / "tools" / "xtuner_v1_names.json").read_text(encoding="utf-8"))
BEGIN, END = "<!-- BEGIN GENERATED TABLE (tools/build_compat_page.py) -->", "<!-- END GENERATED TABLE -->"

# XTuner classes that have another name here (abstract bases map onto the one concrete class of this project)
CLASS_MAP = {
    "xtuner.v1.model.base.TransformerConfig": "xtuner_nb.model.Qwen3DenseConfig",
    "xtuner.v1.model.base.XTunerBaseModelConfig": "xtuner_nb.model.Qwen3DenseConfig",
    "xtuner.v1.model.base.HFSaveCfg": "xtuner_nb.model.HFSaveCfg",
    "xtuner.v1.datasets.config.BaseDataloaderConfig": "xtuner_nb.datasets.DataloaderConfig",
    "xtuner.v1.train.trainer.ResumeConfig": "xtuner_nb.train.ResumeConfig",
    "xtuner.v1.train.trainer.LoadCheckpointConfig": "xtuner_nb.train.LoadCheckpointConfig",
    "xtuner.v1.train.trainer.TrainerConfig": "xtuner_nb.train.TrainerConfig",
    "xtuner.v1.train.trainer.HooksConfig": "xtuner_nb.train.HooksConfig",
    "xtuner.v1.datasets.dataloader.Dataloader": "xtuner_nb.datasets.PackedDataLoader",
}
SKIP_CLASSES = {"xtuner.v1.train.arguments.arguments.TrainingArguments"}  # its fields are the CLI flag rows

# Why a default differs on purpose (class name, field) -> reason
DIFFERENT_DEFAULTS = {
    ("MHAConfig", "qk_norm"): "True here: transformers' Qwen3 always has q/k norms (XTuner's Qwen3 presets set True)",
    ("Qwen3DenseConfig", "*"): "XTuner's Qwen3DenseConfig has no defaults for the model shape; here they are "
                               "Qwen3-8B's",
    ("TransformerConfig", "*"): "XTuner's TransformerConfig has no defaults for the model shape; here they are "
                                "Qwen3-8B's (Qwen3DenseConfig)",
    ("XTunerBaseModelConfig", "*"): "see Qwen3DenseConfig",
    ("Qwen3DenseConfig", "rope_parameters_cfg"): "rope_theta 1e6 here (Qwen3's); XTuner's base class has 10000",
    ("TransformerConfig", "rope_parameters_cfg"): "rope_theta 1e6 here (Qwen3's); XTuner's base class has 10000",
    ("MHAConfig", "num_attention_heads"): "required in XTuner; Qwen3-8B's value here",
    ("MHAConfig", "num_key_value_heads"): "required in XTuner; Qwen3-8B's value here",
    ("MHAConfig", "head_dim"): "required in XTuner; Qwen3-8B's value here",
    ("TrainerConfig", "dataloader_cfg"): "required in XTuner; DataloaderConfig() here",
    ("TrainerConfig", "optim_cfg"): "required in XTuner; AdamWConfig() here",
    ("TrainerConfig", "lr_cfg"): "required in XTuner; LRConfig() here",
    ("TrainerConfig", "global_batch_size"): "required in XTuner; None (one pack per rank) here",
    ("TrainerConfig", "work_dir"): "XTuner resolves None to the current folder; here to ./work_dir",
    ("TrainerConfig", "grad_norm_dtype"): "stored as the name 'float32' (torch.float32 is accepted)",
    ("FSDPConfig", "param_dtype"): "stored as the name 'bfloat16' (torch dtypes are accepted)",
    ("FSDPConfig", "reduce_dtype"): "stored as the name 'bfloat16' (torch dtypes are accepted)",
    ("DatasetConfig", "anno_path"): "stored as a string (Path accepted)",
}
# Fields implemented in another way than XTuner's (class name, field) -> how
IMPLEMENTED_DIFFERENTLY = {
    ("TrainerConfig", "exp_tracker"): "'tensorboard' writes TensorBoard event files next to tracker.jsonl (which is "
                                      "always written: resume and `trainer.history` read it)",
    ("TrainerConfig", "resume_cfg"): "mapped onto auto_resume and load_checkpoint_cfg (XTuner reads only its "
                                     "auto_resume)",
    ("TrainerConfig", "profile_step"): "steps are 1-based; the profile spans the end of step N-1 to the end of step N",
    ("TrainerConfig", "profile_memory"): "CUDA: allocator snapshot as XTuner; CPU: the profiler's memory timeline",
    ("TrainerConfig", "debug"): "DEBUG lines on the console",
    ("TrainerConfig", "work_dir"): "None means ./work_dir here (XTuner: the current folder)",
    ("TrainerConfig", "snapshot_interval"): "checkpoints/snapshot-step-N, only the newest kept; auto_resume takes the "
                                            "newest checkpoint or snapshot",
    ("TrainerConfig", "async_checkpoint"): "torch DCP async_save; the checkpoint counts (train_state.json) once its "
                                           "weights are written, at the next save or the end of fit",
    ("CELossConfig", "mode"): "'liger' needs the liger-kernel package (CUDA) and is refused without it",
    ("CELossConfig", "chunk_size"): "None is accepted in eager mode (ignored) and refused in chunk mode, as XTuner "
                                    "asserts",
    ("TrainerConfig", "loss_cfg"): "also takes a custom BaseLossConfig; None: the model config's lm_loss_cfg",
    ("HooksConfig", "after_train_step"): "called after the optimizer step; train_step_info is the metrics row",
    ("BaseLossConfig", "mode"): "chunk mode of a custom loss runs loss_fn per chunk (no recompute in the backward)",
    ("MHAConfig", "attn_impl"): "flash_attention / flex_attention / eager_attention all run the packed varlen "
                                "attention (flash kernel on CUDA, per-sample SDPA on CPU); sdpa / eager / varlen are "
                                "this project's names",
    ("DataloaderConfig", "round_up"): "False keeps every pack, the last global batch may be short (XTuner drops the "
                                      "packs after the last whole global batch)",
    ("FSDPConfig", "torch_compile"): "default True is logged as not applied (eager layers); set explicitly, each "
                                     "decoder layer is compiled",
}

# XTuner fields that are class attributes here (accepted as arguments when None or equal to the class's value)
CLASS_ATTRIBUTE_FIELDS = {"model_type": "a class attribute here (config.json's model_type, e.g. 'qwen3'); None or "
                                        "the class's own value is accepted as an argument"}

# Package names (module __all__ entries) that do not exist here, by pattern -> why
MISSING_NAME_WHY = [
    (r"MoE|Moe|Balancing|ZLoss|Router|AuxLoss|GreedyRouter",
     "MoE models are not supported (dense Qwen3, Qwen2 and Llama only)"),
    (r"VL|Intern|Vision|MLLM|mllm|vl_|Qwen3_5|GptOss|Glm|DeepSeek|Qwen2",
     "dense text models only (Qwen3, Qwen2/Qwen2.5, Llama)"),
    (r"RL|LogProb|MTP", "RL and multi-token prediction are not supported"),
    (r"Muon|GenerateConfig", "not implemented (see the config rows)"),
]
# XTuner methods with no counterpart here, by pattern of their dotted path -> why
MISSING_METHOD_WHY = [
    (r"JsonlDataset\.count_(offsets|tokens)$", "XTuner's steps of reading a file (byte offsets, then token counts); "
                                               "here a file is tokenized once when the dataset is built"),
    (r"PackDataset\.get_pack_infos$", "XTuner's packing step; here the packs are planned by datasets.packing.plan_soft"),
    (r"\.(eager_mode|chunk_mode)$", "XTuner's two loss kernels; here loss_cfg.mode picks one inside forward"),
    (r"Trainer\.build_(engine|lr_scheduler)$", "XTuner's build steps (its TrainEngine); the Trainer builds its parts "
                                              "in xtuner_nb.train.build"),
    (r"OptimConfig\.build$", "the base class has no build here; AdamWConfig.build(params) builds the optimizer"),
    (r"standardize_rope_params$", "a no-op in XTuner (for transformers' RoPE helpers); RoPE parameters come from "
                                  "rope_parameters_cfg here"),
    (r"SequenceContext\.packed_causal_query_ranges$", "used by XTuner's sequence-parallel attention, which is not "
                                                      "implemented"),
    (r"HybridChatTemplate\.decorate_(files|functions|function_call|function_result|code_interpreter\w*)$",
     "XTuner's agent fields (functions, code interpreter) are not in this template class"),
]
# callables whose signature differs for a reason the two signatures alone do not tell -> the note
CALLABLE_NOTES = {
    "xtuner.v1.train.Trainer": "keyword arguments only, as XTuner's; each is a TrainerConfig field (its rows compare "
                               "them), `backend=` is `dist_backend`; here also `hooks=` and `show_dashboard=`",
    "xtuner.v1.datasets.dataloader.Dataloader": "built by build_dataloader or DataloaderConfig.build, as XTuner's; "
                                                "XTuner's class passes its arguments on to torch's DataLoader",
    "xtuner.v1.datasets.DatasetConfig.build": "returns one tokenized file per data file of anno_path (XTuner: one "
                                              "JsonlDataset); build_datasets gives XTuner's JsonlDatasets",
}
STATUS = {"en": {"same": "same", "extended": "compatible, extended", "different": "different",
                 "no effect": "accepted, no effect", "refused": "not supported", "missing": "missing"},
          "zh_cn": {"same": "相同", "extended": "兼容（有扩展）", "different": "不同", "no effect": "接受，无作用",
                    "refused": "不支持", "missing": "没有"}}
# Notes built from a template with values -> the zh_cn template; a `reason` is translated through NOTES_ZH_CN, the
# default values are code and stay as they are
REFUSED_NOTE = "only XTuner's default; {reason}"
DEFAULT_NOTE = "default {ours} here, `{theirs}` in XTuner"
NOTE_TEMPLATES_ZH_CN = {REFUSED_NOTE: "仅接受 XTuner 的默认值；{reason}",
                        DEFAULT_NOTE: "这里默认为 {ours}，XTuner 中为 `{theirs}`",
                        EXTENDED_NOTE: "XTuner 为 `{theirs}`，这里为 `{ours}`",
                        DIFFERENT_NOTE: "参数不同：XTuner 为 `{theirs}`，这里为 `{ours}`"}
HEADER = {"en": "| XTuner v1 name | Kind | Here | Notes |\n|---|---|---|---|",
          "zh_cn": "| XTuner v1 名称 | 类别 | 本项目 | 说明 |\n|---|---|---|---|"}


def ours(xtuner_path: str) -> str:
    return CLASS_MAP.get(xtuner_path, xtuner_path.replace("xtuner.v1.", "xtuner_nb."))


def resolve(dotted: str) -> Any:
    module, _, attr = dotted.rpartition(".")
    try:
        return getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError):
        return None


def importable(module: str) -> bool:
    try:
        importlib.import_module(module)
        return True
    except ImportError:
        return False


def eval_default(expr: str | None, namespace: dict[str, Any]) -> Any:
    """XTuner's default expression evaluated with this project's classes (e.g. `CELossConfig(mode='chunk')`)."""
    import torch

    if expr is None:
        return None
    return eval(expr, {"torch": torch, **namespace})  # noqa: S307 - our own generated list of default expressions


def namespace() -> dict[str, Any]:
    import xtuner_nb.config as c
    import xtuner_nb.loss as lo
    import xtuner_nb.model as m
    import xtuner_nb.train as t

    return {n: getattr(mod, n) for mod in (c, lo, m, t) for n in mod.__all__ if not n.startswith("_")}


def plain(value: Any) -> Any:
    from xtuner_nb.config.base import _dump

    text = str(value)
    if text.startswith("torch."):
        return text.removeprefix("torch.")
    return _dump(value, False)


def field_rows() -> list[tuple[str, str, str, str]]:
    """(name, kind, status key, note) for every field of every XTuner config class."""
    from xtuner_nb.config.base import COMPAT_KEY, REFUSED_KEY

    ns, rows = namespace(), []
    for path, cls_info in NAMES["classes"].items():
        if path in SKIP_CLASSES:
            continue
        cls = resolve(ours(path))
        name = cls_info["name"]
        if cls is None:
            rows.append((f"`{path}`", "class", "missing", "not implemented"))
            continue
        rows.append((f"`{path}`", "class", "same", f"`{cls.__module__}.{cls.__name__}`"))
        for field, f in cls_info["fields"].items():
            label = f"`{name}.{field}`"
            info = getattr(cls, "model_fields", {}).get(field)
            if info is None and field in CLASS_ATTRIBUTE_FIELDS:
                rows.append((label, "field", "different", CLASS_ATTRIBUTE_FIELDS[field]))
                continue
            if info is None:
                rows.append((label, "field", "missing", "not accepted"))
                continue
            extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
            if REFUSED_KEY in extra:
                rows.append((label, "field", "refused", REFUSED_NOTE.format(reason=extra[REFUSED_KEY])))
                continue
            why = DIFFERENT_DEFAULTS.get((name, field)) or DIFFERENT_DEFAULTS.get((name, "*"))
            ours_default = info.get_default(call_default_factory=True) if not info.is_required() else None
            if f["required"] or f["default"] is None:
                same = info.is_required() or why is None
            else:
                try:
                    same = plain(eval_default(f["default"], ns)) == plain(ours_default)
                except Exception:  # an XTuner-only expression
                    same = False
            how = IMPLEMENTED_DIFFERENTLY.get((name, field))
            if same and how:
                rows.append((label, "field", "different", how))
            elif not same:
                rows.append((label, "field", "different",
                             why or DEFAULT_NOTE.format(ours=repr(plain(ours_default)), theirs=f["default"])))
            elif COMPAT_KEY in extra:  # a compat_field: any value accepted, none has an effect
                rows.append((label, "field", "no effect", extra[COMPAT_KEY]))
            else:
                rows.append((label, "field", "same", ""))
    return rows


def unsupported_why(obj: Any) -> str | None:
    """The reason of one of XTuner's names that is importable here and refuses to be used (`xtuner_nb._unsupported`)."""
    from xtuner_nb._unsupported import WHY_ATTR

    return getattr(obj, WHY_ATTR, None) if isinstance(obj, type) else None


def signature_status(path: str, owner: Any, name: str | None, obj: Any) -> tuple[str, str]:
    """(status, note) of one of XTuner's public callables (`path` in NAMES["signatures"]) against `obj` here."""
    ns = namespace()

    def equal(theirs: Any, mine: Any) -> bool:
        try:
            return plain(theirs) == plain(mine)
        except Exception:  # noqa: BLE001 - values that do not compare
            return False

    mine = our_params(owner, name, obj)
    if mine is None:
        return "different", "no signature to compare"
    status, note = compare(NAMES["signatures"][path]["params"], mine, lambda e: eval_default(e, ns), equal)
    return (status, CALLABLE_NOTES[path]) if path in CALLABLE_NOTES and status != "same" else (status, note)


def name_status(path: str, obj: Any) -> tuple[str, str]:
    """A package name that exists here: refused with its reason, or its signature against XTuner's, or "same"
    (config classes: their fields have rows of their own)."""
    why = unsupported_why(obj)
    if why is not None:
        return "refused", why
    info = NAMES["signatures"].get(path)
    if info is None or info["kind"] == "method":
        return "same", ""
    return signature_status(path, None, None, obj)


def method_rows() -> list[tuple[str, str, str, str]]:
    """The public methods of XTuner's classes whose class exists here (and is not refused)."""
    rows = []
    for path, info in NAMES["signatures"].items():
        owner_path, _, name = path.rpartition(".")
        if info["kind"] != "method":
            continue
        owner = resolve(ours(owner_path))
        if owner is None or unsupported_why(owner) is not None:
            continue  # the class row says it
        method = getattr(owner, name, None)
        if method is None:
            why = next((w for pat, w in MISSING_METHOD_WHY if re.search(pat, path)), "not implemented")
            rows.append((f"`{path}`", "method", "refused" if why != "not implemented" else "missing", why))
        else:
            rows.append((f"`{path}`", "method", *signature_status(path, owner, name, method)))
    return rows


def extra_class_rows() -> list[tuple[str, str, str, str]]:
    """XTuner classes outside the packages' names whose signatures are compared (e.g. its Dataloader)."""
    rows = []
    for path, info in NAMES["signatures"].items():
        if info["kind"] == "class" and path in CLASS_MAP:
            obj = resolve(CLASS_MAP[path])
            status = signature_status(path, None, None, obj) if obj is not None else ("missing", "not implemented")
            rows.append((f"`{path}`", "class", status[0], status[1] or f"`{CLASS_MAP[path]}`"))
    return rows


def module_rows() -> list[tuple[str, str, str, str]]:
    rows = []
    modules = sorted(set(NAMES["packages"]) | set(NAMES["modules"]) | {c["module"] for c in NAMES["classes"].values()})
    for mod in modules:
        if mod == "xtuner.v1.train.arguments.arguments":
            rows.append((f"`{mod}`", "module", "different", "the CLI flags are parsed in `xtuner_nb.train.cli`"))
            continue
        here = mod.replace("xtuner.v1.", "xtuner_nb.")
        rows.append((f"`{mod}`", "module", "same" if importable(here) else "missing", f"`{here}`"))
    for pkg, names in NAMES["packages"].items():
        mod = importlib.import_module(pkg.replace("xtuner.v1.", "xtuner_nb."))
        for n in names:
            if hasattr(mod, n):
                rows.append((f"`{pkg}.{n}`", "name", *name_status(f"{pkg}.{n}", getattr(mod, n))))
            else:
                why = next((w for pat, w in MISSING_NAME_WHY if re.search(pat, n)), "not implemented")
                rows.append((f"`{pkg}.{n}`", "name", "refused", why))
    return rows


def preset_rows() -> list[tuple[str, str, str, str]]:
    from xtuner_nb.model import get_model_config

    rows = []
    for alias in NAMES["model_presets"]:
        try:
            cfg = get_model_config(alias)
            rows.append((f"`get_model_config({alias!r})`", "preset", "same", f"`{type(cfg).__name__}`"))
        except ValueError:
            rows.append((f"`get_model_config({alias!r})`", "preset", "refused",
                         "not a dense text model supported here (MoE / vision-language / another architecture)"))
    return rows


CLI_NOTES = {
    "--tokenize-fn": "openai and (ours) pretrain; ftdp is refused (XTuner's internal format)",
    "--optim": "AdamW; Muon is refused (not implemented)",
    "--float8-config": "refused: float8 training is not implemented",
    "--load-model": "only true (a checkpoint always restores the model)",
    "--chat-template": "XTuner's names plus this project's templates",
}


CLI_REFUSED = {"--dataset-config-list": "a list of dataset configs is not given on the command line here; use "
                                         "--dataset with a .py file defining `datasets`"}


def cli_rows() -> list[tuple[str, str, str, str]]:
    from xtuner_nb.train.cli import build_parser

    sft = build_parser()._subparsers._group_actions[0].choices["sft"]
    known = {o for a in sft._actions for o in a.option_strings}
    rows = []
    for f in NAMES["cli_sft_flags"]:
        flag = f["flag"]
        if flag in CLI_REFUSED:
            rows.append((f"`{flag}`", "CLI flag", "refused", CLI_REFUSED[flag]))
        elif flag not in known:
            rows.append((f"`{flag}`", "CLI flag", "missing", "not accepted"))
        elif flag in CLI_NOTES:
            rows.append((f"`{flag}`", "CLI flag", "different", CLI_NOTES[flag]))
        else:
            rows.append((f"`{flag}`", "CLI flag", "same", "values are checked by the config field of the same name"
                         if "." in flag else ""))
    return rows


def all_rows() -> list[tuple[str, str, str, str]]:
    return module_rows() + extra_class_rows() + method_rows() + field_rows() + preset_rows() + cli_rows()


def template_values(template: str, note: str) -> dict[str, str] | None:
    """The values a note was built with from `template`, or None when it was not built from it."""
    pattern = re.escape(template)
    for key in re.findall(r"\{(\w+)\}", template):
        pattern = pattern.replace(re.escape(f"{{{key}}}"), f"(?P<{key}>.+)")
    match = re.fullmatch(pattern, note)
    return match.groupdict() if match else None


def note_zh_cn(note: str) -> str | None:
    """The Chinese note, or None when it has no translation (an empty note or a code name needs none)."""
    if not note or re.fullmatch(r"`[^`]*`", note):
        return note
    if note in NOTES_ZH_CN:
        return NOTES_ZH_CN[note]
    for template, zh in NOTE_TEMPLATES_ZH_CN.items():
        values = template_values(template, note)
        if values is None:
            continue
        if "reason" in values:
            values["reason"] = NOTES_ZH_CN.get(values["reason"])
            if values["reason"] is None:
                return None
        return zh.format(**values)
    return None


def untranslated(rows: list[tuple[str, str, str, str]]) -> list[str]:
    """English notes of `rows` with no Chinese translation (the part to add to tools/compat_notes_zh_cn.py)."""
    missing = set()
    for *_, note in rows:
        if note_zh_cn(note) is None:
            reason = template_values(REFUSED_NOTE, note)
            missing.add(reason["reason"] if reason else note)
    return sorted(missing)


class UntranslatedNotes(ValueError):
    def __init__(self, notes: list[str]):
        super().__init__(f"{len(notes)} note(s) of the compatibility table have no Chinese translation; add them to "
                         "NOTES_ZH_CN in tools/compat_notes_zh_cn.py:\n" + "\n".join(f"  {n!r}" for n in notes))


def table(lang: str) -> str:
    rows = all_rows()
    notes = [note for *_, note in rows]
    if lang == "zh_cn":
        notes = [note_zh_cn(note) for note in notes]
        if None in notes:
            raise UntranslatedNotes(untranslated([row for row, zh in zip(rows, notes) if zh is None]))
    lines = [HEADER[lang]]
    for (name, kind, status, _), note in zip(rows, notes):
        note = note.replace("|", "\\|").replace("\n", " ")
        lines.append(f"| {name} | {kind} | {STATUS[lang][status]} | {note} |")
    src = NAMES["source"]
    stamp = (f"Generated from {src['repository']} at commit `{src['commit'][:12]}` "
             f"({len(lines) - 1} rows)." if lang == "en" else
             f"由 {src['repository']} 的提交 `{src['commit'][:12]}` 生成（共 {len(lines) - 1} 行）。")
    return f"{BEGIN}\n\n{stamp}\n\n" + "\n".join(lines) + f"\n\n{END}"


def page_path(lang: str) -> Path:
    return ROOT / "docs" / lang / "xtuner_compat.md"


def render(lang: str, text: str) -> str:
    head, _, rest = text.partition(BEGIN)
    _, _, tail = rest.partition(END)
    return head + table(lang) + tail


def main() -> None:
    try:  # both pages are rendered before either is written
        pages = {page_path(lang): render(lang, page_path(lang).read_text(encoding="utf-8")) for lang in ("en", "zh_cn")}
    except UntranslatedNotes as e:
        raise SystemExit(f"error: {e}") from None
    for path, text in pages.items():
        path.write_text(text, encoding="utf-8")
        print(f"wrote {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
