"""XTuner v1 names this project does not implement: importing one works, using it says why.

Code written for XTuner imports whole lists of names (`from xtuner.v1.datasets import FTDPTokenizeFnConfig,
VLMJsonlDataset, ...`) even when it uses one of them. So that the import itself never fails, each such name here is
a placeholder class; constructing or calling it raises `NotImplementedError("<name> is not supported by xtuner_nb:
<why>")`. The compatibility page reads the reason from `WHY_ATTR` and lists the name as "not supported".
"""

from __future__ import annotations

from typing import NoReturn

WHY_ATTR = "__xtuner_nb_unsupported__"


class UnsupportedName:
    """Base of the placeholders; `isinstance` / `issubclass` checks against one work, using it raises."""

    def __new__(cls, *args, **kwargs) -> NoReturn:
        raise NotImplementedError(f"{cls.__name__} is not supported by xtuner_nb: {getattr(cls, WHY_ATTR)}")


def unsupported(name: str, why: str, module: str) -> type:
    """A placeholder for XTuner's `name` (class or function) in `module`, refusing with `why`."""
    return type(name, (UnsupportedName,), {WHY_ATTR: why, "__module__": module,
                                           "__doc__": f"Not supported by xtuner_nb: {why}"})


def unsupported_names(module: str, why_by_name: dict[str, str]) -> dict[str, type]:
    """`{name: placeholder}` for a module's `globals().update(...)`."""
    return {name: unsupported(name, why, module) for name, why in why_by_name.items()}
