"""The matrix (tools/test_versions.py) runs the ends that xtuner_nb/versions.py and pyproject.toml declare.

test_env_report checks pyproject's floors against versions.TESTED; this checks that the matrix's sets are those
ends, so a floor raised in one place and not in the matrix (or a Python declared and never run) fails here.
"""

from __future__ import annotations

import importlib.util
import re
import tomllib
from pathlib import Path

from xtuner_nb.versions import TESTED, _release

ROOT = Path(__file__).parents[2]


def load_matrix():
    spec = importlib.util.spec_from_file_location("test_versions_tool", ROOT / "tools" / "test_versions.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_matrix_runs_the_declared_floors_and_every_declared_python():
    matrix = load_matrix()
    pinned: dict[str, list[str]] = {"python": [python for python, _ in matrix.SETS.values()]}
    for _, pins in matrix.SETS.values():
        for pin in pins:
            name, _, version = pin.partition("==")
            if version:
                pinned.setdefault(name, []).append(version)

    def lowest(versions: list[str]) -> str:
        return min(versions, key=_release)

    # each tested floor is the oldest version a set pins, at the precision versions.py names it
    for name, (low, _) in TESTED.items():
        assert _release(lowest(pinned[name]))[:len(_release(low))] == _release(low), (name, pinned[name], low)
    # every minor Python from requires-python's floor to the newest tested one has a column of its own
    pythons = {_release(p) for p in pinned["python"]}
    low, high = (_release(v) for v in TESTED["python"])
    assert pythons == {(3, minor) for minor in range(low[1], high[1] + 1)}, pythons
    # the newest columns pin nothing: they take the newest releases
    assert all("==" not in pin for pin in matrix.SETS["newest"][1] + matrix.SETS["newest-py3.13"][1])
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    nbmake = next(r for r in project["optional-dependencies"]["test"] if r.startswith("nbmake"))
    assert "nbmake==" + re.search(r">=([\d.]+)", nbmake).group(1) in matrix.SETS["floor"][1]


def test_the_install_pages_state_the_tested_ranges():
    """docs/{en,zh_cn}/install.md: a row per library, `| name | oldest – newest | `>=floor` |`, as versions.py."""
    row = re.compile(r"^\| (\w+)[^|]*\| ([\d.]+) – ([\d.]+) \| `>=([\d.]+)` \|$", re.M)
    for page in ("en", "zh_cn"):
        text = (ROOT / "docs" / page / "install.md").read_text()
        stated = {name.lower(): (low, high) for name, low, high, floor in row.findall(text) if floor == low}
        assert {name: stated.get(name) for name in TESTED} == TESTED, page
