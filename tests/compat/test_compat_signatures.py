"""The compatibility page's signature check: XTuner's callables are read with `ast` (through their import chains,
data classes left out), compared with ours by parameter names, order, kinds and defaults, and a row says "same"
only when they match."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools"))
import build_compat_page as compat  # noqa: E402
from compat_signatures import MISSING, compare  # noqa: E402
from xtuner_v1_signatures import Resolver, public_callables  # noqa: E402

SOURCES = {
    "pkg/__init__.py": "from .impl import build, Loader as Renamed, Cfg, Kind\n__all__ = ['build', 'Renamed']\n",
    "pkg/impl.py": (
        "import enum\nfrom pydantic import BaseModel as PB\n"
        "def build(cfg, datasets, seed, mesh=None, *args, flag=True, **kw): ...\n"
        "class Base:\n    def __init__(self, data, size=2): ...\n"
        "class Loader(Base):\n"
        "    def get_state_dict(self): ...\n"
        "    @classmethod\n    def make(cls, x, y=1): ...\n"
        "    @staticmethod\n    def helper(z): ...\n"
        "    @property\n    def length(self): ...\n"
        "    def _private(self): ...\n"
        "class Cfg(PB):\n    a: int = 1\n    def build(self, tok): ...\n"
        "class Kind(enum.Enum):\n    A = 'a'\n"),
}


def _read(module: str, package: bool) -> str:
    return SOURCES[module.replace(".", "/") + ("/__init__.py" if package else ".py")]


def _p(name, kind="positional", default=None):
    return {"name": name, "kind": kind, "default": default}


def test_xtuner_callables_are_read_through_imports_and_aliases():
    found = public_callables(Resolver(_read), "pkg", ["build", "Renamed", "Cfg", "Kind"])
    assert found["pkg.build"]["params"] == [_p("cfg"), _p("datasets"), _p("seed"), _p("mesh", default="None"),
                                            _p("args", "var_positional"), _p("flag", "keyword", "True"),
                                            _p("kw", "var_keyword")]
    # a class is called with its (inherited) __init__; its public methods lose self / cls, not a static's argument
    assert found["pkg.Renamed"]["params"] == [_p("data"), _p("size", default="2")]
    assert found["pkg.Renamed.make"]["params"] == [_p("x"), _p("y", default="1")]
    assert found["pkg.Renamed.helper"]["params"] == [_p("z")]
    assert "pkg.Renamed.length" not in found and "pkg.Renamed._private" not in found
    # a pydantic model (fields compared one by one elsewhere) and an enum have no signature; their methods do
    assert "pkg.Cfg" not in found and "pkg.Kind" not in found and found["pkg.Cfg.build"]["params"] == [_p("tok")]


def _ours(*params):
    return [{"name": n, "kind": k, "default": d} for n, k, d in params]


THEIRS = [_p("tokenizer"), _p("seed", default="42"), _p("shuffle", "keyword", "True")]


@pytest.mark.parametrize("ours,status", [
    (_ours(("tokenizer", "positional", MISSING), ("seed", "positional", 42), ("shuffle", "keyword", True)), "same"),
    # more, all optional, after XTuner's positional ones: XTuner's calls bind the same way
    (_ours(("tokenizer", "positional", None), ("seed", "positional", 42), ("shuffle", "positional", True),
           ("dp_rank", "keyword", None)), "extended"),
    (_ours(("tokenizer", "positional", MISSING), ("seed", "positional", 7), ("shuffle", "keyword", True)),
     "different"),  # another default
    (_ours(("seed", "positional", 42), ("tokenizer", "positional", MISSING), ("shuffle", "keyword", True)),
     "different"),  # another order
    (_ours(("tok", "positional", MISSING), ("seed", "positional", 42), ("shuffle", "keyword", True)),
     "different"),  # another name
    (_ours(("tokenizer", "positional", MISSING), ("seed", "positional", 42), ("shuffle", "keyword", True),
           ("extra", "keyword", MISSING)), "different"),  # a new required argument
])
def test_a_row_is_same_only_when_the_signatures_match(ours, status):
    got, note = compare(THEIRS, ours, evaluate=eval, equal=lambda a, b: a == b)
    assert got == status
    if status != "same":
        assert "XTuner `(tokenizer, seed=42, *, shuffle=True)`" in note


def test_the_page_rows_of_the_data_api():
    rows = {name.strip("`"): (status, note) for name, _kind, status, note in compat.all_rows()}
    assert rows["xtuner.v1.datasets.build_dataloader"] == ("same", "")
    assert rows["xtuner.v1.datasets.HardPackDataset"] == ("same", "")
    assert rows["xtuner.v1.datasets.DataloaderConfig.build"][0] == "extended"
    assert rows["xtuner.v1.datasets.VLMJsonlDataset"][0] == "refused"
    # a default XTuner changed would turn the row into "different"
    info = compat.NAMES["signatures"]["xtuner.v1.datasets.HardPackDataset"]
    changed = {**info, "params": [{**p, "default": "4096"} if p["name"] == "pack_max_length" else p
                                  for p in info["params"]]}
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(compat.NAMES["signatures"], "xtuner.v1.datasets.HardPackDataset", changed)
        from xtuner_nb.datasets import HardPackDataset

        status, note = compat.name_status("xtuner.v1.datasets.HardPackDataset", HardPackDataset)
    assert status == "different" and "pack_max_length=4096" in note
