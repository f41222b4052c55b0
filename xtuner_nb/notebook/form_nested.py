"""The parts of `ConfigForm` that recurse: editors of nested configs (a sub-form, a union of config classes, a list
of configs), the dispatch from a pydantic field annotation to its editor, and `FieldRow`, one row per field.

Sub-forms are `ConfigForm`s themselves, made by the `sub_form` factory that `forms.py` passes down (this module never
imports `forms.py`, which builds on it).
"""

from __future__ import annotations

import enum
import html
import json
import types
import typing
from pathlib import Path, PurePath
from typing import Any, Callable, Literal, Union, get_args, get_origin

import ipywidgets as W
from pydantic import ValidationError

from ..config.base import XConfig, _dump
from .form_editors import (_INPUT_W, _LABEL_W, _MISSING, _NONE_TYPE, ConfigFormError, _Editor, _FieldError,
                           _JsonEditor, _OptionalEditor, _ReadOnlyEditor, _SeqEditor, _TextEditor, _TupleEditor,
                           _ValueEditor)


# (config instance or class, dotted path of the field) -> the ConfigForm of that nested config
SubForm = Callable[[Any, str], Any]


class _NestedEditor(_Editor):
    """A nested config: a collapsible sub-form."""

    subform = True

    def __init__(self, form: Any, title: str):  # form: a ConfigForm
        self.form = form
        self.input = form.widget
        self._title = title
        self.widget = W.Accordion(children=[form.widget], titles=(self._title_text(),), selected_index=None)
        form._retitle = self._retitle

    def _title_text(self) -> str:
        return f"{self._title}: {self.form.cls.__name__}"

    def _retitle(self):
        self.widget.titles = (self._title_text(),)

    def get(self):
        return self.form._build(show=True)

    def set(self, value):
        if value is _MISSING or value is None:
            return
        if isinstance(value, XConfig):
            self.form._load(value)
        elif isinstance(value, dict):
            self.form._apply_raw(value)
        else:
            raise _FieldError(f"expected a {self.form.cls.__name__} or a dict, got {value!r}")

    def observe(self, callback):
        self.form._notify_parent = callback

    def set_disabled(self, disabled):
        pass


class _ChoiceEditor(_Editor):
    """A union of config classes: a dropdown picks the class, the sub-form below edits it."""

    def __init__(self, classes: list[type[XConfig]], value: Any, path: str, sub_form: SubForm):
        self.classes, self._path = classes, path
        current = type(value) if isinstance(value, XConfig) else classes[0]
        self.pick = W.Dropdown(options=[(c.__name__, c) for c in classes], value=current,
                               layout=W.Layout(width=_INPUT_W))
        self.nested = _NestedEditor(sub_form(value if isinstance(value, XConfig) else current, path),
                                    path.rsplit(".", 1)[-1])
        self.input = self.pick
        self.widget = W.VBox([self.pick, self.nested.widget])
        self._callback: Callable[[], None] | None = None
        self.pick.observe(self._switch, names="value")

    def _switch(self, change):
        if self.nested.form.cls is not change["new"]:
            self.nested.form._swap_class(change["new"], keep_overrides=False)
        if self._callback:
            self._callback()

    def get(self):
        return self.nested.get()

    def set(self, value):
        if isinstance(value, XConfig) and type(value) in self.classes:
            self.pick.value = type(value)
        self.nested.set(value)

    def observe(self, callback):
        self._callback = callback
        self.nested.observe(callback)


class _ConfigListEditor(_Editor):
    """A list of configs: one collapsible sub-form per item, with add / remove-last buttons."""

    def __init__(self, item_cls: type[XConfig], value: Any, path: str, sub_form: SubForm):
        self.item_cls, self._path, self._sub_form = item_cls, path, sub_form
        self.forms: list = []  # ConfigForm each
        self.box = W.Accordion(children=[])
        self.add = W.Button(description="+ add", layout=W.Layout(width="80px"),
                            tooltip=f"append a default {item_cls.__name__}")
        self.remove = W.Button(description="− remove last", layout=W.Layout(width="120px"))
        self.input = self.box
        self.widget = W.VBox([self.box, W.HBox([self.add, self.remove])])
        self._callback: Callable[[], None] | None = None
        self.add.on_click(lambda _b: self._append(None, notify=True))
        self.remove.on_click(lambda _b: self._pop())
        self.set(value)

    def _append(self, item: Any, notify: bool = False):
        form = self._sub_form(item if isinstance(item, XConfig) else self.item_cls, f"{self._path}.{len(self.forms)}")
        if isinstance(item, dict):
            form._apply_raw(item)
        form._notify_parent = self._changed
        self.forms.append(form)
        self._render()
        if notify:
            self._changed()

    def _pop(self):
        if self.forms:
            self.forms.pop()
            self._render()
            self._changed()

    def _render(self):
        self.box.children = [f.widget for f in self.forms]
        self.box.titles = tuple(f"[{i}] {f.cls.__name__}" for i, f in enumerate(self.forms))

    def _changed(self):
        if self._callback:
            self._callback()

    def get(self):
        values, errors = [], {}
        for form in self.forms:
            try:
                values.append(form._build(show=True))
            except ConfigFormError as exc:
                errors.update(exc.errors)
        if errors:
            raise ConfigFormError(self.item_cls.__name__, errors)
        return values

    def set(self, value):
        if value is _MISSING or value is None:
            return
        self.forms = []
        for item in value:
            self._append(item)

    def observe(self, callback):
        self._callback = callback


# ---- type dispatch -------------------------------------------------------------------------------------------
def _unwrap(ann: Any) -> Any:
    while get_origin(ann) is typing.Annotated:
        ann = get_args(ann)[0]
    return ann


def _is_subclass(ann: Any, base: type) -> bool:
    """`issubclass` for any annotation. On Python 3.10 `isinstance(list[int], type)` is True and `issubclass`
    then raises; a parametrized generic (`types.GenericAlias`) is never one of our classes."""
    return isinstance(ann, type) and not isinstance(ann, types.GenericAlias) and issubclass(ann, base)


def _is_config_class(t: Any) -> bool:
    return _is_subclass(t, XConfig)


def _placeholder(ann: Any) -> Any:
    """A value to show in the inner editor of an Optional field that is None now."""
    ann = _unwrap(ann)
    if ann is bool:
        return False
    if ann is int:
        return 0
    if ann is float:
        return 0.0
    if get_origin(ann) is Literal:
        return get_args(ann)[0]
    if _is_subclass(ann, enum.Enum):
        return next(iter(ann))
    if _is_config_class(ann):
        return _try_default(ann) or ann
    return _MISSING


def _make_editor(ann: Any, value: Any, path: str, required: bool, sub_form: SubForm) -> _Editor:
    ann = _unwrap(ann)
    origin, args = get_origin(ann), get_args(ann)
    if origin in (Union, types.UnionType):
        members = [a for a in args if a is not _NONE_TYPE]
        if len(members) < len(args):  # Optional
            inner_ann = members[0] if len(members) == 1 else Union[tuple(members)]
            return _OptionalEditor(lambda v: _make_editor(inner_ann, v, path, False, sub_form), value,
                                   _placeholder(inner_ann))
        if all(_is_config_class(m) for m in members):
            return _ChoiceEditor(members, value, path, sub_form)
        if set(members) <= {str, Path, PurePath}:
            return _TextEditor(value, is_path=False, required=required)
        if set(members) <= {int, float}:
            return _ValueEditor(W.FloatText(value=0.0 if value is _MISSING else float(value),
                                            layout=W.Layout(width=_INPUT_W)), float)
        return _JsonEditor(value) if _jsonable(value) else _ReadOnlyEditor(value)
    if ann is bool:
        return _ValueEditor(W.Checkbox(value=bool(value) if value is not _MISSING else False, indent=False), bool)
    if ann is int:
        return _ValueEditor(W.IntText(value=0 if value is _MISSING else int(value), layout=W.Layout(width=_INPUT_W)),
                            int)
    if ann is float:
        return _ValueEditor(W.FloatText(value=0.0 if value is _MISSING else float(value),
                                        layout=W.Layout(width=_INPUT_W)), float)
    if ann is str:
        return _TextEditor(value, is_path=False, required=required,
                           multiline=isinstance(value, str) and "\n" in value)
    if _is_subclass(ann, PurePath):
        return _TextEditor(value, is_path=True, required=required)
    if origin is Literal:
        options = [(str(a), a) for a in args]
        start = value if value in args else args[0]
        return _ValueEditor(W.Dropdown(options=options, value=start, layout=W.Layout(width=_INPUT_W)))
    if _is_subclass(ann, enum.Enum):
        return _ValueEditor(W.Dropdown(options=[(m.name, m) for m in ann],
                                       value=value if isinstance(value, ann) else next(iter(ann)),
                                       layout=W.Layout(width=_INPUT_W)), ann)
    if _is_config_class(ann):
        start = value if isinstance(value, XConfig) else ann
        return _NestedEditor(sub_form(start, path), path.rsplit(".", 1)[-1])
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return _SeqEditor(value, of_str=_unwrap(args[0]) in (str, Path), as_tuple=True)
        if args and all(_unwrap(a) in (bool, int, float, str) or get_origin(_unwrap(a)) is Literal for a in args):
            vals = list(value) if isinstance(value, (tuple, list)) and len(value) == len(args) else [_MISSING] * len(args)
            return _TupleEditor([_make_editor(a, v, path, required, sub_form) for a, v in zip(args, vals)])
    if origin in (list, typing.Sequence, set, frozenset) or ann in (list, tuple):
        item = _unwrap(args[0]) if args else Any
        item_members = [a for a in get_args(item) if a is not _NONE_TYPE] if get_origin(item) in (Union, types.UnionType) else [item]
        if item_members and all(_is_config_class(m) for m in item_members):
            return _ConfigListEditor(item_members[0], value, path, sub_form)
        if item in (str, int, float, Path) and origin in (list, typing.Sequence):
            return _SeqEditor(value, of_str=item in (str, Path), as_tuple=False)
    if ann in (dict, Any) or origin is dict:
        return _JsonEditor(value) if _jsonable(value) else _ReadOnlyEditor(value)
    return _JsonEditor(value) if _jsonable(value) else _ReadOnlyEditor(value)


def _jsonable(value: Any) -> bool:
    """JSON can hold it (configs inside count: they are written with their `__type__` and read back)."""
    if value is _MISSING:
        return True
    try:
        json.dumps(_dump(value, True))
        return True
    except (TypeError, ValueError):
        return False


def _try_default(cls: type[XConfig]) -> XConfig | None:
    try:
        return cls()
    except ValidationError:
        return None


# ---- one row per field ---------------------------------------------------------------------------------------
class FieldRow:
    """The widgets of one field: `input` (set `.value` on it), `error` (the inline message), `hint`, `editor`."""

    def __init__(self, name: str, path: str, editor: _Editor, description: str):
        self.name, self.path, self.editor = name, path, editor
        self.input = editor.input
        self.none = getattr(editor, "none", None)  # the "None" checkbox of Optional fields
        self.error = W.HTML(value="", layout=W.Layout(min_width="0"))
        self.hint = W.HTML(value=f"<span style='color:#777;font-size:0.85em'>{html.escape(description)}</span>"
                           if description else "", layout=W.Layout(flex="1 1 auto", min_width="0"))
        label = W.Label(value=name, tooltip=description or name, layout=W.Layout(width=_LABEL_W, min_width=_LABEL_W))
        if isinstance(editor, (_NestedEditor, _ConfigListEditor, _ChoiceEditor)) or (
                isinstance(editor, _OptionalEditor) and isinstance(editor.inner, _NestedEditor)):
            self.widget = W.VBox([W.HBox([label, self.hint]), editor.widget, self.error])
        else:
            self.widget = W.HBox([label, editor.widget, self.error, self.hint],
                                 layout=W.Layout(align_items="center"))

    @property
    def message(self) -> str:
        return getattr(self, "_message", "")

    def show_error(self, message: str) -> None:
        self._message = message
        self.error.value = (f"<span style='color:#c62828;font-weight:600'>⚠ {html.escape(message)}</span>"
                            if message else "")

    def get(self) -> Any:
        return self.editor.get()

    def set(self, value: Any) -> None:
        self.editor.set(value)
