"""PEP 562 lazy attributes: a package lists `name -> submodule` and imports the submodule on first access, so its
configs import quickly (pydantic only) while the tensor code comes with the first use."""

from __future__ import annotations

from importlib import import_module
from typing import Any, Callable


def lazy_attributes(package: str, lazy: dict[str, str], namespace: dict[str, Any]) -> tuple[Callable, Callable]:
    """`__getattr__, __dir__ = lazy_attributes(__name__, _LAZY, globals())` in a package's `__init__`."""

    def __getattr__(name: str) -> Any:
        if name in lazy:
            value = getattr(import_module(lazy[name], package), name)
            namespace[name] = value
            return value
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__() -> list[str]:
        return sorted(set(namespace) | set(lazy))

    return __getattr__, __dir__
