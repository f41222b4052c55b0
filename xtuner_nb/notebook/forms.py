"""Config forms: any `XConfig` as an ipywidgets form that is only a view of the config (the config stays the truth).

    form = config_form(Qwen3Dense8BConfig)      # or an instance; shows itself as the last expression of a cell
    cfg = form.value                            # the validated config (raises ConfigFormError naming every bad field)

Widgets come from the pydantic field types (bool, int, float, str, Path, Literal/Enum, Optional, tuples, lists,
nested configs, unions of configs), each field's `description` is shown as its hint, pydantic's validation errors
appear next to the field they belong to, and a live preview shows the Python code that rebuilds the config (only
the fields that differ from the defaults). XTuner's fields that do nothing here (`compat_field`,
`refused_unless_default`) sit below the real ones in a collapsed "XTuner compatibility" section, at every level of
nesting; they are edited and validated like the others. Model configs get a preset picker that swaps the size
preset while keeping the fields the user changed. Core ipywidgets only, so it renders in JupyterLab, VS Code and
Colab; with no clicks (a notebook run headless) `form.value` is just the config it was made from.

This file is the form itself; the widgets of each row are in `form_editors.py` (scalars, text, sequences, JSON,
Optional) and `form_nested.py` (sub-forms of nested configs, the annotation -> editor dispatch, `FieldRow`).
"""

from __future__ import annotations

import html
import types
from typing import Any, Callable, Union, get_args, get_origin

import ipywidgets as W
from pydantic import ValidationError

from ..config.base import XConfig, _dump, _qualname, is_compat_field
from .form_editors import _MISSING, ConfigFormError, _FieldError, _OptionalEditor
from .form_nested import (FieldRow, _ChoiceEditor, _ConfigListEditor, _is_config_class, _make_editor, _NestedEditor,
                          _try_default, _unwrap)

__all__ = ["ConfigForm", "ConfigFormError", "config_form"]

COMPAT_TITLE = "XTuner compatibility"


def config_form(cfg_or_class: XConfig | type[XConfig], *, presets: dict[str, type] | None = None,
                show_code: bool = True) -> "ConfigForm":
    """An editable form for a config instance or class (class: start from its defaults)."""
    return ConfigForm(cfg_or_class, presets=presets, show_code=show_code)


class _NestedOverrides(dict):
    """Overrides of a nested config, applied field by field onto the new parent's default of that field."""


# ---- the form -------------------------------------------------------------------------------------------------
class ConfigForm:
    """An ipywidgets form over one config class; `.value` is the validated config, `.code` its Python code."""

    def __init__(self, cfg_or_class: XConfig | type[XConfig], *, presets: dict[str, type] | None = None,
                 show_code: bool = True, _path: str = ""):
        cls = cfg_or_class if isinstance(cfg_or_class, type) else type(cfg_or_class)
        if not _is_config_class(cls):
            raise TypeError(f"config_form needs an XConfig class or instance, got {cfg_or_class!r}")
        self._path = _path
        self._notify_parent: Callable[[], None] | None = None
        self._retitle: Callable[[], None] | None = None
        self._listeners: list[Callable[[ConfigForm], None]] = []
        self._quiet = 0  # >0 while widgets are set in bulk: refresh once at the end
        self.errors: dict[str, str] = {}
        self._last_valid: XConfig | None = None

        self.presets = _presets_for(cls) if presets is None else dict(presets)
        self.title = W.HTML()
        self.preset = None
        header: list[W.Widget] = [self.title]
        if self.presets:
            options = list(self.presets.items())
            if cls not in self.presets.values():
                options.insert(0, (cls.__name__, cls))
            self.preset = W.Dropdown(options=options, value=cls, description="preset",
                                     tooltip="swap the size preset; the fields you changed are kept",
                                     layout=W.Layout(width="260px"))
            self.preset.observe(lambda c: self._swap_class(c["new"]), names="value")
            header.append(self.preset)
        self.reset = W.Button(description="reset", tooltip="back to the defaults of this class",
                              layout=W.Layout(width="70px"))
        self.reset.on_click(lambda _b: self._reset())
        if not _path:
            header.append(self.reset)
        self.body = W.VBox()
        self.form_error = W.HTML()
        self.preview = W.HTML()
        children = [W.HBox(header, layout=W.Layout(align_items="center")), self.body, self.form_error]
        if show_code:
            children.append(self.preview)
        self.widget = W.VBox(children)
        self._show_code = show_code
        start = cfg_or_class if isinstance(cfg_or_class, XConfig) else _try_default(cls)
        self._make_rows(cls, start)
        if not _path:
            self._refresh()

    # ---- public API ------------------------------------------------------------------------------------------
    @property
    def value(self) -> XConfig:
        """The validated config; raises ConfigFormError naming each invalid field (also shown in the form)."""
        return self._build(show=True)

    @property
    def code(self) -> str:
        """Python code that rebuilds the current config (only fields that differ from the defaults)."""
        cfg = self._last_valid
        if cfg is None:
            return ""
        return f"{_imports_for(cfg)}\n\ncfg = {cfg.to_python()}"

    def field(self, path: str) -> FieldRow:
        """The row of a field; nested fields by dotted path: `form.field("attention.head_dim")`."""
        head, _, rest = path.partition(".")
        if head not in self.rows:
            raise KeyError(f"{self.cls.__name__} has no field {head!r}; fields: {', '.join(self.rows)}")
        row = self.rows[head]
        if not rest:
            return row
        editor = row.editor.inner if isinstance(row.editor, _OptionalEditor) else row.editor
        if isinstance(editor, _ChoiceEditor):
            editor = editor.nested
        if isinstance(editor, _NestedEditor):
            return editor.form.field(rest)
        if isinstance(editor, _ConfigListEditor):
            index, _, rest = rest.partition(".")
            return editor.forms[int(index)].field(rest)
        raise KeyError(f"{self._path or self.cls.__name__}.{head} is not a nested config")

    def set(self, **values: Any) -> "ConfigForm":
        """Set widgets from values (nested configs: an instance or a dict of their fields)."""
        with self._bulk():
            self._apply_raw(values, strict=True)
        return self

    def on_change(self, callback: Callable[["ConfigForm"], None]) -> None:
        """Call `callback(form)` after every change (once the form has re-validated)."""
        self._listeners.append(callback)

    def _repr_mimebundle_(self, **kwargs):
        data = self.widget._repr_mimebundle_(**kwargs)
        if isinstance(data, tuple):
            data = data[0]
        data = dict(data or {})
        data["text/plain"] = self.code or repr(self)
        data["text/html"] = self.preview.value
        return data

    def __repr__(self):
        return f"<ConfigForm {self.cls.__name__}: {len(self.errors)} error(s)>"

    # ---- building ------------------------------------------------------------------------------------------
    def _make_rows(self, cls: type[XConfig], start: XConfig | None) -> None:
        self.cls = cls
        self.title.value = f"<b>{html.escape(cls.__name__)}</b>" if not self._path else ""
        self.rows: dict[str, FieldRow] = {}
        compat: list[str] = []
        for name, info in cls.model_fields.items():
            if start is not None:
                value = getattr(start, name)
            elif not info.is_required():
                value = info.get_default(call_default_factory=True)
            else:
                value = _MISSING
            path = f"{self._path}.{name}" if self._path else name
            editor = _make_editor(info.annotation, value, path, required=info.is_required(), sub_form=_sub_form)
            row = FieldRow(name, path, editor, _description(cls, name))
            editor.observe(self._changed)
            self.rows[name] = row
            if is_compat_field(info):
                compat.append(name)
        # XTuner's fields that do nothing here: folded away below the real ones, still part of the config
        self.compat_section = W.Accordion(
            children=[W.VBox([self.rows[n].widget for n in compat])], selected_index=None,
            titles=(f"{COMPAT_TITLE} ({len(compat)} field{'s' * (len(compat) != 1)} that do nothing here)",)
        ) if compat else None
        real = [row.widget for name, row in self.rows.items() if name not in compat]
        self.body.children = real + ([self.compat_section] if compat else [])
        if self._retitle:
            self._retitle()

    def _build(self, show: bool) -> XConfig:
        """Read every widget, validate with pydantic, show errors next to their fields; return or raise."""
        errors: dict[str, str] = {}  # own fields (by name) and nested ones (by their full path)
        data: dict[str, Any] = {}
        own: dict[str, str] = {}
        for name, row in self.rows.items():
            try:
                value = row.get()
            except _FieldError as exc:
                own[name] = str(exc)
                continue
            except ConfigFormError as exc:  # the sub-form shows its own errors
                errors.update(exc.errors)
                own[name] = "invalid nested config (see below)"
                continue
            if value is not _MISSING:
                data[name] = value
        form_msg = ""
        result = None
        try:
            result = self.cls.model_validate(data)
        except ValidationError as exc:
            for err in exc.errors():
                loc = err.get("loc", ())
                if not loc:
                    form_msg = err["msg"]
                    continue
                name = str(loc[0])
                if name in own:
                    continue
                where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc[1:])
                # union/optional branches add the type name to loc: it is noise next to the field
                where = "" if where and all(isinstance(p, str) and p not in self._nested_fields(name)
                                              for p in loc[1:]) else where
                msg = err["msg"].removeprefix("Value error, ")
                own.setdefault(name, f"{msg}{f' (at {where})' if where else ''}")
        if show:
            for name, row in self.rows.items():
                row.show_error(own.get(name, ""))
            self.form_error.value = (f"<span style='color:#c62828'>⚠ {html.escape(form_msg)}</span>"
                                     if form_msg else "")
        for name, msg in own.items():
            if msg != "invalid nested config (see below)":
                errors[self.rows[name].path] = msg
        if form_msg:
            errors[self._path] = form_msg
        self.errors = errors
        if errors or result is None:
            raise ConfigFormError(self.cls.__name__, errors)
        self._last_valid = result
        return result

    def _nested_fields(self, name: str) -> set[str]:
        ann = _unwrap(self.cls.model_fields[name].annotation)
        members = get_args(ann) if get_origin(ann) in (Union, types.UnionType) else (ann,)
        return {f for m in members if _is_config_class(m) for f in m.model_fields}

    # ---- changes ---------------------------------------------------------------------------------------------
    def _changed(self) -> None:
        if self._quiet:
            return
        if self._notify_parent is not None:
            self._notify_parent()
        else:
            self._refresh()

    def _refresh(self) -> None:
        try:
            self._build(show=True)
        except ConfigFormError:
            pass
        if self._show_code:
            self._render_preview()
        for callback in self._listeners:
            callback(self)

    def _render_preview(self) -> None:
        code = self.code
        if self.errors:
            note = (f"<div style='color:#c62828'>⚠ {len(self.errors)} invalid field(s): "
                    f"{html.escape(', '.join(self.errors))} — the code below is the last valid config</div>")
        else:
            note = ""
        self.preview.value = (f"{note}<pre style='background:#f6f8fa;border:1px solid #ddd;padding:6px;"
                              f"margin:4px 0;white-space:pre-wrap'>{html.escape(code or '(no valid config yet)')}</pre>")

    class _Bulk:
        def __init__(self, form):
            self.form = form

        def __enter__(self):
            self.form._quiet += 1

        def __exit__(self, *exc):
            self.form._quiet -= 1
            if not self.form._quiet:
                self.form._changed() if self.form._notify_parent else self.form._refresh()

    def _bulk(self):
        return ConfigForm._Bulk(self)

    def _load(self, cfg: XConfig) -> None:
        """Show another instance (possibly of another class with the same fields)."""
        with self._bulk():
            if type(cfg) is not self.cls:
                self._make_rows(type(cfg), cfg)
                self._sync_preset()
            else:
                for name, row in self.rows.items():
                    row.set(getattr(cfg, name))

    def _apply_raw(self, values: dict[str, Any], strict: bool = False) -> None:
        with self._bulk():
            for name, value in values.items():
                if name not in self.rows:
                    if strict:
                        raise KeyError(f"{self.cls.__name__} has no field {name!r}; fields: {', '.join(self.rows)}")
                    continue
                row = self.rows[name]
                editor = row.editor
                if isinstance(value, _NestedOverrides):
                    inner = editor.inner if isinstance(editor, _OptionalEditor) else editor
                    if isinstance(inner, _OptionalEditor) or not isinstance(inner, (_NestedEditor, _ChoiceEditor)):
                        continue
                    if isinstance(editor, _OptionalEditor):
                        editor.none.value = False
                    nested = inner.nested if isinstance(inner, _ChoiceEditor) else inner
                    nested.form._apply_raw(value)
                    continue
                try:
                    row.set(value)
                except _FieldError as exc:
                    if strict:
                        raise ValueError(f"{row.path}: {exc}") from None

    def _overrides(self, defaults: XConfig | None = None) -> dict[str, Any]:
        """What the user changed against the defaults (this class's, or for a nested form its parent's default
        value of that field: a preset's attention differs from MHAConfig's defaults), nested configs field by field."""
        defaults = defaults if defaults is not None else _try_default(self.cls)
        out: dict[str, Any] = {}
        for name, row in self.rows.items():
            editor = row.editor
            if isinstance(editor, _NestedEditor) and defaults is not None and \
                    type(getattr(defaults, name)) is editor.form.cls:
                sub = editor.form._overrides(getattr(defaults, name))
                if sub:
                    out[name] = _NestedOverrides(sub)
                continue
            try:
                value = row.get()
            except (_FieldError, ConfigFormError):
                continue
            if value is _MISSING:
                continue
            if defaults is None or _dump(value, True) != _dump(getattr(defaults, name), True):
                out[name] = value
        return out

    def _swap_class(self, new_cls: type[XConfig], keep_overrides: bool = True) -> None:
        if new_cls is self.cls:
            return
        overrides = self._overrides() if keep_overrides else {}
        with self._bulk():
            self._make_rows(new_cls, _try_default(new_cls))
            self._apply_raw(overrides)
            self._sync_preset()

    def _sync_preset(self) -> None:
        if self.preset is not None and self.cls in [v for _, v in self.preset.options]:
            self.preset.value = self.cls

    def _reset(self) -> None:
        with self._bulk():
            self._make_rows(self.cls, _try_default(self.cls))


# ---- helpers -------------------------------------------------------------------------------------------------
def _sub_form(start: XConfig | type[XConfig], path: str) -> ConfigForm:
    """The form of a nested config (the factory `form_nested`'s editors call: that module never imports this one)."""
    return ConfigForm(start, _path=path, show_code=False)


def _description(cls: type[XConfig], name: str) -> str:
    # a preset subclass re-declares `num_hidden_layers: int = 28` and so drops the base class's description
    for klass in cls.__mro__:
        info = getattr(klass, "model_fields", {}).get(name)
        if info is not None and info.description:
            return info.description
    return ""


def _presets_for(cls: type[XConfig]) -> dict[str, type]:
    try:
        from ..model.registry import presets_for
    except ImportError:
        return {}
    return presets_for(cls)


def _imports_for(cfg: XConfig) -> str:
    """`from xtuner_nb.model import Qwen3Dense8BConfig` lines for every config class the code names."""
    by_module: dict[str, set[str]] = {}

    def walk(value: Any, top: bool) -> None:
        if isinstance(value, XConfig):
            module, _, name = _qualname(type(value)).rpartition(".")
            by_module.setdefault(module, set()).add(name)
            for v in value.changed_fields().values():
                walk(v, False)
        elif isinstance(value, (list, tuple)):
            for v in value:
                walk(v, False)
        elif isinstance(value, dict):
            for v in value.values():
                walk(v, False)

    walk(cfg, True)
    return "\n".join(f"from {m} import {', '.join(sorted(n))}" for m, n in sorted(by_module.items()))
