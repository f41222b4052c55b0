"""XTuner's fields that do nothing here are declared with a marker (`compat_field`: any value accepted, no effect;
`refused_unless_default`: only XTuner's default) and after every real field, in every config of the package. The
forms fold the marked fields into a collapsed "XTuner compatibility" section and the compatibility page lists them
from the marker, so a field whose description says it has no effect but has no marker would be shown as a real one.
"""

from __future__ import annotations

import importlib
import pkgutil
import re

import pytest
from pydantic import Field

import xtuner_nb
from xtuner_nb.config.base import XConfig, compat_field, is_compat_field, refused_unless_default

SAYS_NO_EFFECT = re.compile(r"no effect|accepted for xtuner compatibility", re.IGNORECASE)


def config_classes() -> list[type[XConfig]]:
    """Every XConfig subclass defined in xtuner_nb (every module imported first, so none is missed)."""
    for module in pkgutil.walk_packages(xtuner_nb.__path__, "xtuner_nb."):
        if not module.name.endswith(".__main__"):  # `python -m` entry points run when imported
            importlib.import_module(module.name)
    found, todo = set(), [XConfig]
    while todo:
        for sub in todo.pop().__subclasses__():
            if sub not in found:
                found.add(sub)
                todo.append(sub)
    return sorted((c for c in found if c.__module__.startswith("xtuner_nb.")),
                  key=lambda c: f"{c.__module__}.{c.__name__}")


def misplaced_fields(cls: type[XConfig]) -> list[str]:
    """A marked field declared before a real one, and a real field whose description says it does nothing."""
    names = list(cls.model_fields)
    marked = [n for n in names if is_compat_field(cls.model_fields[n])]
    real = [n for n in names if n not in marked]
    problems = [f"{cls.__name__}.{n} (XTuner compatibility) is declared before the real field "
                f"{cls.__name__}.{real[-1]}" for n in marked if real and names.index(n) < names.index(real[-1])]
    problems += [f"{cls.__name__}.{n}: the description says it has no effect, but the field is not declared with "
                 "compat_field or refused_unless_default" for n in real
                 if SAYS_NO_EFFECT.search(cls.model_fields[n].description or "")]
    return problems


CLASSES = config_classes()


def test_every_config_of_the_package_is_checked():
    names = {c.__name__ for c in CLASSES}
    assert {"TrainerConfig", "LoadCheckpointConfig", "ResumeConfig", "HooksConfig", "DataloaderConfig",
            "DatasetConfig", "OpenaiTokenizeFunctionConfig", "FSDPConfig", "AdamWConfig", "LRConfig",
            "CELossConfig", "TransformerConfig", "MHAConfig", "HFSaveCfg", "LoRAConfig"} <= names


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_xtuner_only_fields_are_marked_and_declared_after_the_real_ones(cls):
    assert misplaced_fields(cls) == []


def test_the_check_finds_a_marked_field_first_and_an_unmarked_no_effect_field():
    class MarkedFirst(XConfig):
        knob: int = compat_field(1, "XTuner's kernel knob; no effect here")
        size: int = Field(1, description="A real field.")

    class Unmarked(XConfig):
        size: int = Field(1, description="A real field.")
        knob: int = Field(1, description="Accepted for XTuner compatibility; no effect.")

    class InOrder(XConfig):
        size: int = Field(1, description="A real field.")
        knob: int = compat_field(1, "XTuner's kernel knob; no effect here")
        other: int = refused_unless_default(1, "XTuner's other knob is not implemented")

    assert misplaced_fields(MarkedFirst) == [
        "MarkedFirst.knob (XTuner compatibility) is declared before the real field MarkedFirst.size"]
    assert misplaced_fields(Unmarked) == [
        "Unmarked.knob: the description says it has no effect, but the field is not declared with compat_field or "
        "refused_unless_default"]
    assert misplaced_fields(InOrder) == []
