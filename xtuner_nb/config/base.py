"""The base of every config: a strict pydantic v2 model that round-trips through dict, JSON and YAML.

One config object is the truth of a run. Forms in `xtuner_nb.notebook` are views of it, the Trainer records it
next to every checkpoint, and `to_python()` prints the code that rebuilds it (only the fields that differ from
the class defaults, e.g. `Qwen3Dense8BConfig(num_hidden_layers=16)`).
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

TYPE_KEY = "__type__"  # records the class so that a preset or subclass comes back as itself
REFUSED_KEY = "xtuner_refused"  # json_schema_extra key of a field that only takes XTuner's default here
COMPAT_KEY = "xtuner_compat"  # json_schema_extra key of every field kept only so that XTuner's configs load
# json_schema_extra key of a field that acts only when set explicitly (FSDPConfig.torch_compile): to_dict leaves it
# out while it is unset, so a saved config (YAML for torchrun, launch()) does not switch it on when read back
ONLY_WHEN_SET_KEY = "only_when_set"


def compat_field(default: Any, why: str, **kw: Any) -> Any:
    """A field XTuner has that does nothing here (a knob of XTuner's own kernels or storage): any value is
    accepted and ignored, `why` says so. Declared after a config's real fields; forms show it under a collapsed
    "XTuner compatibility" section."""
    return Field(default, json_schema_extra={COMPAT_KEY: why}, description=f"Accepted for XTuner compatibility; {why}",
                 **kw)


def is_compat_field(info: Any) -> bool:
    """True for a `compat_field` or a `refused_unless_default` field (pydantic FieldInfo)."""
    extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
    return COMPAT_KEY in extra


def refused_unless_default(default: Any, why: str, *, also: tuple = (), **kw: Any) -> Any:
    """A field XTuner has and this project does not implement: its default (and the values in `also`) are
    accepted, so a config XTuner dumps loads; any other value fails with `why` (which says what to use instead).
    The compatibility page (docs/*/xtuner_compat.md) lists these fields from this marker."""
    extra = {REFUSED_KEY: why, COMPAT_KEY: why}
    if "default_factory" in kw:
        return Field(json_schema_extra=extra, description=f"Accepted for XTuner compatibility; {why}", **kw)
    extra["also"] = list(also)
    return Field(default, json_schema_extra=extra, description=f"Accepted for XTuner compatibility; {why}", **kw)


class XConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True, arbitrary_types_allowed=True,
                              protected_namespaces=())

    @model_validator(mode="after")
    def _refuse_unimplemented(self):
        for name, info in type(self).model_fields.items():
            extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
            if REFUSED_KEY not in extra:
                continue
            value = getattr(self, name)
            default = info.get_default(call_default_factory=True)
            if _dump(value, False) != _dump(default, False) and value not in extra.get("also", ()):
                raise ValueError(f"{type(self).__name__}.{name}={value!r} is not supported by xtuner_nb: "
                                 f"{extra[REFUSED_KEY]}")
        return self

    # ---- serialisation ---------------------------------------------------------------------------------------
    def to_dict(self, with_type: bool = True) -> dict[str, Any]:
        """Plain JSON-safe dict of every field (but an unset `ONLY_WHEN_SET_KEY` one); nested configs carry their class
        under `__type__`."""
        out: dict[str, Any] = {TYPE_KEY: _qualname(type(self))} if with_type else {}
        for name, info in type(self).model_fields.items():
            extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
            if extra.get(ONLY_WHEN_SET_KEY) and name not in self.model_fields_set:
                continue
            out[name] = _dump(getattr(self, name), with_type)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]):
        data = dict(data)
        target = _resolve(data.pop(TYPE_KEY, None)) or cls
        if not issubclass(target, cls):
            raise TypeError(f"{_qualname(target)} is not a {cls.__name__}")
        return target.model_validate({k: _load(v) for k, v in data.items()})

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str):
        return cls.from_dict(json.loads(text))

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False, allow_unicode=True)

    @classmethod
    def from_yaml(cls, text_or_path: str | Path):
        text = Path(text_or_path).read_text() if _looks_like_path(text_or_path) else str(text_or_path)
        return cls.from_dict(yaml.safe_load(text))

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.write_text(self.to_yaml() if path.suffix in (".yaml", ".yml") else self.to_json())
        return path

    # ---- code preview -----------------------------------------------------------------------------------------
    def changed_fields(self) -> dict[str, Any]:
        """Fields whose value differs from the class default (what a user actually chose)."""
        defaults = _defaults_of(type(self))
        return {k: getattr(self, k) for k in type(self).model_fields
                if k not in defaults or _dump(getattr(self, k), False) != _dump(defaults[k], False)}

    def to_python(self, indent: int = 0) -> str:
        """The Python expression that rebuilds this config, e.g. `AdamWConfig(lr=6e-05)`."""
        args = [f"{k}={_py(v, indent + 4)}" for k, v in self.changed_fields().items()]
        one_line = f"{type(self).__name__}({', '.join(args)})"
        if len(one_line) + indent <= 100 or not args:
            return one_line
        pad = " " * (indent + 4)
        return f"{type(self).__name__}(\n" + "".join(f"{pad}{a},\n" for a in args) + " " * indent + ")"


def _qualname(cls: type) -> str:
    module = cls.__module__
    # prefer the shortest public path (xtuner_nb.model for a class of xtuner_nb.model.dense.qwen3) that re-exports it
    parts = module.split(".") if module.startswith("xtuner_nb.") else []
    for depth in range(2, len(parts)):
        public = ".".join(parts[:depth])
        try:
            if getattr(importlib.import_module(public), cls.__name__, None) is cls:
                return f"{public}.{cls.__name__}"
        except ImportError:
            pass
    return f"{module}.{cls.__name__}"


def _resolve(name: str | None) -> type | None:
    if not name:
        return None
    module, _, attr = name.rpartition(".")
    return getattr(importlib.import_module(module), attr)


def _dump(value: Any, with_type: bool) -> Any:
    if isinstance(value, XConfig):
        return value.to_dict(with_type)
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, dict):
        return {str(k): _dump(v, with_type) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_dump(v, with_type) for v in value]
    if isinstance(value, Path):
        return str(value)
    if callable(value) and hasattr(value, "__qualname__"):
        return f"{value.__module__}.{value.__qualname__}"
    return value


def _load(value: Any) -> Any:
    if isinstance(value, dict) and TYPE_KEY in value:
        cls = _resolve(value[TYPE_KEY])
        return cls.from_dict(value)
    if isinstance(value, dict):
        return {k: _load(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_load(v) for v in value]
    return value


def _defaults_of(cls: type[XConfig]) -> dict[str, Any]:
    out = {}
    for name, field in cls.model_fields.items():
        if not field.is_required():
            out[name] = field.get_default(call_default_factory=True)
    return out


def _py(value: Any, indent: int) -> str:
    if isinstance(value, XConfig):
        return value.to_python(indent)
    if isinstance(value, Path):
        return repr(str(value))
    if isinstance(value, list):
        return "[" + ", ".join(_py(v, indent) for v in value) + "]"
    if isinstance(value, tuple):
        return "(" + ", ".join(_py(v, indent) for v in value) + ("," if len(value) == 1 else "") + ")"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k!r}: {_py(v, indent)}" for k, v in value.items()) + "}"
    return repr(value)


def _looks_like_path(x: str | Path) -> bool:
    if isinstance(x, Path):
        return True
    return "\n" not in x and len(x) < 4096 and Path(x).suffix in (".yaml", ".yml", ".json") and Path(x).exists()
