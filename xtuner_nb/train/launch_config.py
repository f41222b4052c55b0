"""The config of a launched run travels to the workers as YAML data (never pickled code): `config_yaml` writes it, or
refuses it with the name of the field that cannot travel."""

from __future__ import annotations

from typing import Any

from .config import TrainerConfig


def config_yaml(config: TrainerConfig) -> str:
    """The config as YAML that loads back into the same TrainerConfig; else a ValueError naming the field."""
    for name in type(config).model_fields:
        where = _code_in(getattr(config, name), name)
        if where:
            raise ValueError(f"launch(): the config field {where} holds code, which cannot travel to the worker "
                             "processes (the config goes to them as YAML data); give plain values, or train in "
                             "this kernel with trainer.fit()")
    try:
        text = config.to_yaml()  # an unset field that acts only when set (torch_compile) stays out: base.to_dict
        back = TrainerConfig.from_yaml(text)
    except Exception as exc:
        raise ValueError(f"launch(): the config cannot be written as YAML and read back: {exc}") from exc
    full, full_back = config.to_dict(), back.to_dict()
    changed = [k for k in full if full_back.get(k) != full[k]]
    if changed:
        raise ValueError(f"launch(): the config fields {changed} do not read back from YAML as they were")
    return text


def _code_in(value: Any, where: str) -> str | None:
    """The path (`field.sub[0]`) of the first function or other code object inside a config value, or None."""
    from pydantic import BaseModel

    if isinstance(value, BaseModel):
        return next(filter(None, (_code_in(getattr(value, k), f"{where}.{k}") for k in type(value).model_fields)),
                    None)
    if isinstance(value, dict):
        return next(filter(None, (_code_in(v, f"{where}[{k!r}]") for k, v in value.items())), None)
    if isinstance(value, (list, tuple)):
        return next(filter(None, (_code_in(v, f"{where}[{i}]") for i, v in enumerate(value))), None)
    if callable(value) and not isinstance(value, type):
        return f"{where} ({getattr(value, '__qualname__', type(value).__name__)})"
    return None
