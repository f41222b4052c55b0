"""XTuner v1's public callables and their signatures, read with `ast` (used by `tools/xtuner_v1_names.py`).

A public callable is a function or class named in a package's `__all__` (followed through the `from .x import y`
chain to where it is defined), and every public method (no leading underscore; properties and pydantic validators
and serializers left out) defined in such a class's body. A class's own signature is its `__init__` (its own, or the first one up its bases); data
classes (pydantic models, whose fields are compared one by one instead, enums, protocols, typed dicts) have none. A parameter is written as
`{"name", "kind", "default"}`: kind is positional (may be passed by position), keyword (keyword-only),
var_positional (*args) or var_keyword (**kwargs); default is the default's source text, or None when required.
"""

from __future__ import annotations

import ast
from typing import Callable

# classes called to build data, not with a signature of their own: pydantic models (their fields are compared
# one by one instead), enums, protocols and typed dicts
DATA_BASES = {"pydantic.BaseModel", "enum.Enum", "typing.Protocol", "typing_extensions.Protocol",
              "typing.TypedDict", "typing_extensions.TypedDict", "BaseModel", "Enum", "Protocol", "TypedDict"}


class Resolver:
    """Where a name of a module is defined: `read(module, package)` gives a module's source."""

    def __init__(self, read: Callable[[str, bool], str]):
        self.read, self._trees = read, {}

    def tree(self, module: str) -> tuple[ast.Module, bool] | None:
        if module not in self._trees:
            self._trees[module] = None
            for package in (False, True):
                try:
                    self._trees[module] = (ast.parse(self.read(module, package)), package)
                    break
                except Exception:  # noqa: BLE001 - not this kind of module (file or package)
                    continue
        return self._trees[module]

    def find(self, module: str, name: str, depth: int = 0) -> tuple[str, ast.AST | str] | None:
        """`(module, node)` of the def/class `name` is bound to in `module`; `(module, name)` when that module is
        not XTuner's (e.g. `("pydantic", "BaseModel")`); None when not found."""
        found = self.tree(module)
        if found is None:
            return None if module.startswith("xtuner") else (module, name)
        if depth > 20:
            return None
        tree, package = found
        for node in tree.body:
            if isinstance(node, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == name:
                return module, node
            if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == name for t in node.targets) \
                    and isinstance(node.value, ast.Name):  # an alias: CELossContext = LMHeadLossContext
                return self.find(module, node.value.id, depth + 1)
            if isinstance(node, ast.ImportFrom):
                for alias in node.names:
                    if (alias.asname or alias.name) == name:
                        return self.find(self.absolute(module, package, node), alias.name, depth + 1)
        return None

    @staticmethod
    def absolute(module: str, package: bool, node: ast.ImportFrom) -> str:
        if not node.level:
            return node.module or ""
        base = module if package else module.rsplit(".", 1)[0]
        for _ in range(node.level - 1):
            base = base.rsplit(".", 1)[0]
        return f"{base}.{node.module}" if node.module else base

    def is_data_class(self, module: str, cls: ast.ClassDef, depth: int = 0) -> bool:
        """A class whose bases lead to one of DATA_BASES."""
        for base in cls.bases:
            text = ast.unparse(base).split("[")[0]
            found = self.find(module, text.rsplit(".", 1)[-1]) if depth < 10 else None
            if text in DATA_BASES or (found and isinstance(found[1], str) and f"{found[0]}.{found[1]}" in DATA_BASES):
                return True
            if found and isinstance(found[1], ast.ClassDef) and self.is_data_class(found[0], found[1], depth + 1):
                return True
        return False

    def init_of(self, module: str, cls: ast.ClassDef, depth: int = 0) -> ast.FunctionDef | None:
        for item in cls.body:
            if isinstance(item, ast.FunctionDef) and item.name == "__init__":
                return item
        for base in cls.bases:
            found = self.find(module, ast.unparse(base).split("[")[0].rsplit(".", 1)[-1]) if depth < 10 else None
            if found and isinstance(found[1], ast.ClassDef):
                init = self.init_of(found[0], found[1], depth + 1)
                if init is not None:
                    return init
        return None


def params(fn: ast.FunctionDef | ast.AsyncFunctionDef, method: bool) -> list[dict]:
    """The parameters of `fn` as callers see them (`self` / `cls` of a method left out)."""
    decorators = {ast.unparse(d) for d in fn.decorator_list}
    a = fn.args
    positional = a.posonlyargs + a.args
    defaults = [None] * (len(positional) - len(a.defaults)) + [ast.unparse(d) for d in a.defaults]
    out = [{"name": p.arg, "kind": "positional", "default": d} for p, d in zip(positional, defaults)]
    if method and "staticmethod" not in decorators and out:
        out = out[1:]
    if a.vararg:
        out.append({"name": a.vararg.arg, "kind": "var_positional", "default": None})
    out += [{"name": p.arg, "kind": "keyword", "default": ast.unparse(d) if d is not None else None}
            for p, d in zip(a.kwonlyargs, a.kw_defaults)]
    if a.kwarg:
        out.append({"name": a.kwarg.arg, "kind": "var_keyword", "default": None})
    return out


# decorators of what is not called as a method: properties, and pydantic's validators and serializers
_NOT_METHODS = ("property", "cached_property", "functools.cached_property", "field_validator", "model_validator",
                "validator", "root_validator", "field_serializer", "model_serializer", "computed_field")


def _is_method(fn: ast.FunctionDef) -> bool:
    names = [ast.unparse(d.func if isinstance(d, ast.Call) else d) for d in fn.decorator_list]
    return not fn.name.startswith(("_", "model_")) and not any(  # model_*: pydantic's own hooks
        n in _NOT_METHODS or n.endswith((".setter", ".getter")) for n in names)


def public_callables(resolver: Resolver, package: str, names: list[str]) -> dict[str, dict]:
    """`{"<package>.<name>[.<method>]": {"defined_in", "kind", "params"}}` for the callables of `names`."""
    out: dict[str, dict] = {}
    for name in names:
        found = resolver.find(package, name)
        if found is None or isinstance(found[1], str):
            continue
        module, node = found
        key = f"{package}.{name}"
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            out[key] = {"defined_in": module, "kind": "function", "params": params(node, method=False)}
            continue
        if not resolver.is_data_class(module, node):
            init = resolver.init_of(module, node)
            out[key] = {"defined_in": module, "kind": "class",
                        "params": params(init, method=True) if init is not None else []}
        for item in node.body:
            if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)) and _is_method(item):
                out[f"{key}.{item.name}"] = {"defined_in": module, "kind": "method",
                                             "params": params(item, method=True)}
    return out
