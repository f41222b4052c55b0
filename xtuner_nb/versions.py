"""The versions `make test-versions` (tools/test_versions.py) has passed: one table, in one place.

`env_report()` warns when this kernel has a version outside it; pyproject.toml's floors are its floors (a test
checks that they agree); docs/*/install.md quotes the matrix. Versions are compared on the parts a bound names:
torch "2.13" covers 2.13.0 and 2.13.1+cpu.
"""

from __future__ import annotations

import re

# name -> (oldest tested, newest tested); "python" is the interpreter, the rest are distributions
TESTED: dict[str, tuple[str, str]] = {
    "python": ("3.11", "3.13"),
    "torch": ("2.9", "2.15"),
    "transformers": ("4.57", "5.25"),
    "tokenizers": ("0.22", "0.23"),
    "safetensors": ("0.4.3", "0.8"),
    "peft": ("0.13", "0.22"),
}


def _release(version: str) -> tuple[int, ...]:
    """(2, 13, 0) from "2.13.0+cpu" or "2.13.0rc1"."""
    m = re.match(r"\d+(?:\.\d+)*", version)
    return tuple(int(p) for p in m.group(0).split(".")) if m else ()


def outside_tested(installed: dict[str, str | None]) -> list[str]:
    """`name version (tested low – high)` for each installed version outside TESTED; None means not installed."""
    out = []
    for name, version in installed.items():
        if version is None or name not in TESTED:
            continue
        low, high = TESTED[name]
        have = _release(version)
        if have[:len(_release(low))] < _release(low) or have[:len(_release(high))] > _release(high):
            out.append(f"{name} {version} (tested {low} – {high})")
    return out
