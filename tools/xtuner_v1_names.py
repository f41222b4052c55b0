"""Regenerate `tools/xtuner_v1_names.json`: XTuner v1's public names (modules, config classes with their fields and
defaults, the signatures of its public callables (`xtuner_v1_signatures.py`), Trainer arguments, `xtuner sft` CLI
flags), read with `ast` from an InternLM/xtuner checkout.

XTuner v1 is not on PyPI (the newest release there, 0.2.0, has no `xtuner/v1/`), so tests cannot fetch it; they read
this small generated list (names and default expressions, no code) instead. Regenerate it from a checkout:

    git clone https://github.com/InternLM/xtuner /tmp/xtuner
    .venv/bin/python tools/xtuner_v1_names.py /tmp/xtuner          # or --git-dir for a bare repository

`tests/compat/test_xtuner_compat.py` builds every listed config class here and writes the compatibility page rows.
"""

from __future__ import annotations

import argparse
import ast
import json
import subprocess
from pathlib import Path

from xtuner_v1_signatures import Resolver, public_callables  # tools/ is on the path when run as a script

OUT = Path(__file__).with_suffix(".json")

# The SFT / pretraining surface of XTuner v1 (RL, MoE and vision-language models are out of this project's scope;
# their packages appear as module rows only).
PACKAGES = ["xtuner.v1.config", "xtuner.v1.model", "xtuner.v1.datasets", "xtuner.v1.loss", "xtuner.v1.train",
            "xtuner.v1.data_proto", "xtuner.v1.data_proto.messages", "xtuner.v1.data_proto.templates",
            "xtuner.v1.float8"]
# modules XTuner's tests and documentation import from, beside the packages (a module row each)
MODULES = ["xtuner.v1.datasets.packing", "xtuner.v1.datasets.jsonl", "xtuner.v1.datasets.utils",
           "xtuner.v1.datasets.collator", "xtuner.v1.datasets.sampler", "xtuner.v1.datasets.build",
           "xtuner.v1.datasets.dataloader", "xtuner.v1.datasets.ftdp", "xtuner.v1.data_proto.sequence_context",
           "xtuner.v1.data_proto.messages.chat", "xtuner.v1.data_proto.messages.qwen35_chat",
           "xtuner.v1.data_proto.templates.hybrid", "xtuner.v1.data_proto.templates.chat", "xtuner.v1.float8.config",
           "xtuner.v1.train.toy_tokenizer"]
# public callables outside the packages' __all__ whose signatures are compared too (module -> names)
EXTRA_CALLABLES = {"xtuner.v1.datasets.dataloader": ["Dataloader"]}
CLASS_FILES = {
    "xtuner.v1.config.fsdp": ["FSDPConfig"],
    "xtuner.v1.config.optim": ["OptimConfig", "AdamWConfig", "MuonConfig", "LRConfig"],
    "xtuner.v1.train.trainer": ["ResumeConfig", "HooksConfig", "LoadCheckpointConfig", "TrainerConfig"],
    "xtuner.v1.loss.base_loss_ctx": ["BaseLossConfig", "BaseLossKwargs"],
    "xtuner.v1.loss.ce_loss": ["CELossConfig", "CELossKwargs"],
    "xtuner.v1.model.base": ["HFSaveCfg", "XTunerBaseModelConfig", "TransformerConfig"],
    "xtuner.v1.model.dense.qwen3": ["Qwen3DenseConfig", "Qwen3Dense8BConfig", "Qwen3Dense4BConfig",
                                    "Qwen3Dense0P6BConfig"],
    "xtuner.v1.module.attention.mha": ["MHAConfig"],
    "xtuner.v1.module.rope.rope": ["RopeParametersConfig"],
    "xtuner.v1.datasets.config": ["DatasetConfig", "BaseDataloaderConfig", "DataloaderConfig"],
    "xtuner.v1.datasets.sft_tokenize_fn.openai": ["OpenaiTokenizeFunctionConfig"],
    "xtuner.v1.datasets.pt_tokenize_fn.text": ["PretrainTokenizeFunctionConfig"],
    "xtuner.v1.train.arguments.arguments": ["TrainingArguments"],
}
FUNCTIONS = {"xtuner.v1.train.trainer": ["Trainer.__init__"], "xtuner.v1.model": ["get_model_config"]}
MODEL_MAPPING = "xtuner.v1.model"  # `model_mapping` preset names of get_model_config


class Source:
    def __init__(self, root: Path | None, git_dir: Path | None):
        self.root, self.git_dir = root, git_dir

    def read(self, module: str, package: bool = False) -> str:
        rel = module.replace(".", "/") + ("/__init__.py" if package else ".py")
        if self.root is not None:
            return (self.root / rel).read_text(encoding="utf-8")
        return subprocess.run(["git", "-C", str(self.git_dir), "show", f"HEAD:{rel}"], check=True,
                              capture_output=True, text=True).stdout

    def commit(self) -> str:
        where = ["-C", str(self.root or self.git_dir)]
        return subprocess.run(["git", *where, "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()


def _strip_annotated(node: ast.expr) -> ast.expr:
    if isinstance(node, ast.Subscript) and ast.unparse(node.value) in ("Annotated", "typing.Annotated"):
        elts = node.slice.elts if isinstance(node.slice, ast.Tuple) else [node.slice]
        return elts[0]
    return node


def _field_default(value: ast.expr | None) -> str | None:
    if value is None:
        return None
    if isinstance(value, ast.Call) and ast.unparse(value.func) == "Field":
        for kw in value.keywords:
            if kw.arg == "default_factory":
                f = kw.value
                return ast.unparse(f.body) if isinstance(f, ast.Lambda) else f"{ast.unparse(f)}()"
            if kw.arg == "default":
                return ast.unparse(kw.value)
        return ast.unparse(value.args[0]) if value.args else None
    return ast.unparse(value)


def _cli_name(value: ast.expr | None) -> str | None:
    """`Parameter(name="*")` inside Annotated: the fields of this one are flattened into top-level flags."""
    for node in ast.walk(value) if value is not None else []:
        if isinstance(node, ast.Call) and ast.unparse(node.func) == "Parameter":
            for kw in node.keywords:
                if kw.arg == "name" and isinstance(kw.value, ast.Constant):
                    return kw.value.value
    return None


def classes_of(tree: ast.Module, wanted: list[str], module: str) -> dict:
    out = {}
    for node in tree.body:
        if not (isinstance(node, ast.ClassDef) and node.name in wanted):
            continue
        fields = {}
        for item in node.body:
            if isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name) \
                    and item.target.id != "model_config" and not ast.unparse(item.annotation).startswith("ClassVar"):
                entry = {"annotation": ast.unparse(_strip_annotated(item.annotation)),
                         "default": _field_default(item.value), "required": item.value is None}
                if (flat := _cli_name(item.annotation)) is not None:
                    entry["cli_name"] = flat
                fields[item.target.id] = entry
        out[f"{module}.{node.name}"] = {"module": module, "name": node.name,
                                        "bases": [ast.unparse(b) for b in node.bases], "own_fields": fields}
    missing = set(wanted) - {v["name"] for v in out.values()}
    if missing:
        raise SystemExit(f"{module}: classes not found: {sorted(missing)}")
    return out


def resolve_inheritance(classes: dict) -> None:
    by_name = {c["name"]: c for c in classes.values()}

    def fields(c: dict) -> dict:
        merged: dict = {}
        for base in c["bases"]:
            if base in by_name:
                merged.update(fields(by_name[base]))
        merged.update(c["own_fields"])
        return merged

    for c in classes.values():
        c["fields"] = fields(c)


def function_params(tree: ast.Module, dotted: str) -> dict:
    parts, nodes = dotted.split("."), tree.body
    node = None
    for part in parts:
        node = next(n for n in nodes if isinstance(n, (ast.ClassDef, ast.FunctionDef)) and n.name == part)
        nodes = node.body
    args = node.args
    params = {}
    pos = args.posonlyargs + args.args
    for a, d in zip(pos[len(pos) - len(args.defaults):], args.defaults):
        params[a.arg] = {"annotation": ast.unparse(a.annotation) if a.annotation else None, "default": ast.unparse(d)}
    for a in pos[:len(pos) - len(args.defaults)]:
        if a.arg != "self":
            params.setdefault(a.arg, {"annotation": ast.unparse(a.annotation) if a.annotation else None,
                                      "default": None})
    for a, d in zip(args.kwonlyargs, args.kw_defaults):
        params[a.arg] = {"annotation": ast.unparse(a.annotation) if a.annotation else None,
                         "default": ast.unparse(d) if d is not None else None}
    return params


def package_all(tree: ast.Module) -> list[str]:
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "__all__" for t in node.targets):
            return list(ast.literal_eval(node.value))
    return []


def model_mapping(tree: ast.Module) -> list[str]:
    for node in tree.body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", None) == "model_mapping":
            return [k.value for k in node.value.keys]
    return []


def cli_flags(classes: dict) -> list[dict]:
    """`xtuner sft` flags as cyclopts spells them: kebab-case, nested configs as `--fsdp-config.cpu-offload`, and
    the `name="*"` DataloaderConfig flattened to top-level flags."""
    by_name = {c["name"]: c for c in classes.values()}
    args = by_name["TrainingArguments"]["fields"]
    flags = []
    for name, f in args.items():
        nested = next((by_name[t] for t in by_name if t in f["annotation"].replace("|", " ").split()), None)
        if nested is None:
            flags.append({"flag": "--" + name.replace("_", "-"), "field": name, "default": f["default"]})
            continue
        prefix = "--" if f.get("cli_name") == "*" else "--" + name.replace("_", "-") + "."
        given = ast.parse(f["default"], mode="eval").body if f["default"] else None  # e.g. CELossConfig(mode=...)
        overrides = {kw.arg: ast.unparse(kw.value) for kw in given.keywords} if isinstance(given, ast.Call) else {}
        for sub, sf in nested["fields"].items():
            flags.append({"flag": prefix + sub.replace("_", "-"), "field": f"{name}.{sub}",
                          "default": overrides.get(sub, sf["default"])})
    return flags


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkout", nargs="?", type=Path, help="an InternLM/xtuner work tree")
    p.add_argument("--git-dir", type=Path, help="a bare InternLM/xtuner repository (read at HEAD)")
    a = p.parse_args()
    if (a.checkout is None) == (a.git_dir is None):
        p.error("give a checkout or --git-dir")
    src = Source(a.checkout, a.git_dir)
    classes: dict = {}
    for module, names in CLASS_FILES.items():
        classes.update(classes_of(ast.parse(src.read(module)), names, module))
    resolve_inheritance(classes)
    functions = {}
    for module, names in FUNCTIONS.items():
        tree = ast.parse(src.read(module, package=module == MODEL_MAPPING))
        for n in names:
            functions[f"{module}.{n}"] = function_params(tree, n)
    packages = {pkg: package_all(ast.parse(src.read(pkg, package=True))) for pkg in PACKAGES}
    resolver = Resolver(src.read)
    signatures: dict = {}
    for module, names in [*packages.items(), *EXTRA_CALLABLES.items()]:
        signatures.update(public_callables(resolver, module, names))
    data = {
        "source": {"repository": "InternLM/xtuner", "commit": src.commit(), "licence": "Apache-2.0"},
        "packages": packages,
        "modules": MODULES,
        "model_presets": model_mapping(ast.parse(src.read(MODEL_MAPPING, package=True))),
        "classes": {k: {key: v[key] for key in ("module", "name", "bases", "fields")} for k, v in classes.items()},
        "functions": functions,
        "signatures": signatures,
        "cli_sft_flags": cli_flags(classes),
    }
    OUT.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {OUT} ({len(data['classes'])} classes, {len(signatures)} signatures, "
          f"{len(data['cli_sft_flags'])} CLI flags) "
          f"from {data['source']['commit']}")


if __name__ == "__main__":
    main()
