"""Compare a callable's signature here with XTuner's (from `tools/xtuner_v1_names.json`, see
`xtuner_v1_signatures.py`), for `build_compat_page.py`.

- "same": the same parameters, in the same order, of the same kinds, with equal defaults;
- "extended": every call written for XTuner binds the same way here: XTuner's positional parameters come first in
  its order, each XTuner parameter exists with its kind and (where XTuner has one) its default, and what is added
  is optional (a default, `*args`/`**kwargs`, or a default where XTuner requires the argument);
- "different": anything else. The note shows both signatures.
"""

from __future__ import annotations

import ast
import inspect
from typing import Any, Callable

_KINDS = {inspect.Parameter.POSITIONAL_ONLY: "positional", inspect.Parameter.POSITIONAL_OR_KEYWORD: "positional",
          inspect.Parameter.KEYWORD_ONLY: "keyword", inspect.Parameter.VAR_POSITIONAL: "var_positional",
          inspect.Parameter.VAR_KEYWORD: "var_keyword"}
MISSING = object()

SAME_NOTE = ""
EXTENDED_NOTE = "XTuner `{theirs}`, here `{ours}`"
DIFFERENT_NOTE = "parameters differ: XTuner `{theirs}`, here `{ours}`"


def our_params(owner: Any, name: str | None, obj: Any) -> list[dict] | None:
    """`obj`'s parameters as callers see them (a class: its `__init__`'s; a method: without self/cls), in the
    form of XTuner's (`default` is the value here, MISSING when required); None when it has no signature."""
    try:
        sig = inspect.signature(obj)
    except (TypeError, ValueError):
        return None
    params = list(sig.parameters.values())
    if owner is not None and isinstance(inspect.getattr_static(owner, name), type(lambda: 0)) and params:
        params = params[1:]  # a plain method looked up on its class still has `self`
    return [{"name": p.name, "kind": _KINDS[p.kind],
             "default": MISSING if p.default is inspect.Parameter.empty else p.default} for p in params]


def text(params: list[dict], theirs: bool) -> str:
    """`(a, b=1, *args, c=None, **kw)`; XTuner's defaults are source text, ours values."""
    out, star = [], False
    for p in params:
        if p["kind"] == "var_positional":
            out.append(f"*{p['name']}")
            star = True
            continue
        if p["kind"] == "var_keyword":
            out.append(f"**{p['name']}")
            continue
        if p["kind"] == "keyword" and not star:
            out.append("*")
            star = True
        default = p["default"]
        required = default is None if theirs else default is MISSING
        out.append(p["name"] if required else f"{p['name']}={default if theirs else _code(default)}")
    return "(" + ", ".join(out) + ")"


def _code(value: Any) -> str:
    if isinstance(value, type):
        return value.__name__
    return repr(value) if not hasattr(value, "model_dump") else f"{type(value).__name__}()"


def _value(expr: str, evaluate: Callable[[str], Any]) -> Any:
    try:
        return ast.literal_eval(expr)
    except (ValueError, SyntaxError):
        try:
            return evaluate(expr)
        except Exception:  # noqa: BLE001 - an XTuner-only expression: never equal to ours
            return MISSING


def compare(theirs: list[dict], ours: list[dict], evaluate: Callable[[str], Any],
            equal: Callable[[Any, Any], bool]) -> tuple[str, str]:
    """(status, note) for XTuner's parameters `theirs` against `ours` (see the module docstring)."""
    mine = {p["name"]: p for p in ours}
    problems, same = [], len(theirs) == len(ours)
    their_pos = [p["name"] for p in theirs if p["kind"] == "positional"]
    our_pos = [p["name"] for p in ours if p["kind"] == "positional"]
    if our_pos[:len(their_pos)] != their_pos:
        problems.append("positional order")
    for i, t in enumerate(theirs):
        o = mine.get(t["name"])
        if o is None or (o["kind"] != t["kind"] and not (t["kind"] == "keyword" and o["kind"] == "positional")):
            problems.append(t["name"])
            continue
        same = same and ours[i]["name"] == t["name"] and o["kind"] == t["kind"]
        if t["kind"] in ("var_positional", "var_keyword"):
            continue
        if t["default"] is None:
            same = same and o["default"] is MISSING
        elif o["default"] is MISSING or not equal(_value(t["default"], evaluate), o["default"]):
            problems.append(f"default of {t['name']}")
    known = {t["name"] for t in theirs}
    for o in ours:
        if o["name"] not in known and o["kind"] in ("positional", "keyword") and o["default"] is MISSING:
            problems.append(f"required {o['name']}")
    if any(t["kind"] == "var_positional" for t in theirs) and len(our_pos) > len(their_pos):
        problems.append("positional after *args")
    values = {"theirs": text(theirs, True), "ours": text(ours, False)}
    if problems:
        return "different", DIFFERENT_NOTE.format(**values)
    return ("same", SAME_NOTE) if same else ("extended", EXTENDED_NOTE.format(**values))
