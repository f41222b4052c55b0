"""Config forms: any `XConfig` as an ipywidgets form that is only a view of the config (the config stays the truth).

    form = config_form(Qwen3Dense8BConfig)      # or an instance; shows itself as the last expression of a cell
    cfg = form.value                            # the validated config (raises ConfigFormError naming every bad field)

Widgets come from the pydantic field types (bool, int, float, str, Path, Literal/Enum, Optional, tuples, lists,
nested configs, unions of configs), each field's `description` is shown as its hint, pydantic's validation errors
appear next to the field they belong to, and a live preview shows the Python code that rebuilds the config (only
the fields that differ from the defaults). Model configs get a preset picker that swaps the size preset while
keeping the fields the user changed. Core ipywidgets only, so it renders in JupyterLab, VS Code and Colab; with no
clicks (a notebook run headless) `form.value` is just the config it was made from.
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

from ..config.base import XConfig, _dump, _qualname

__all__ = ["ConfigForm", "ConfigFormError", "config_form"]

_MISSING = object()  # "no value": the field is left out so pydantic uses its default or reports it required
_NONE_TYPE = type(None)

_LABEL_W, _INPUT_W = "190px", "230px"


class ConfigFormError(ValueError):
    """The form does not hold a valid config; `.errors` maps each dotted field path to its message."""

    def __init__(self, cls_name: str, errors: dict[str, str]):
        self.errors = dict(errors)
        lines = "\n".join(f"  {path or '(whole config)'}: {msg}" for path, msg in errors.items())
        super().__init__(f"the {cls_name} form has {len(errors)} invalid field(s):\n{lines}")


class _FieldError(ValueError):
    """A widget holds text that cannot even be parsed (before pydantic sees it)."""


def config_form(cfg_or_class: XConfig | type[XConfig], *, presets: dict[str, type] | None = None,
                show_code: bool = True) -> "ConfigForm":
    """An editable form for a config instance or class (class: start from its defaults)."""
    return ConfigForm(cfg_or_class, presets=presets, show_code=show_code)


# ---- editors: one per field type, each knows how to read and write its widgets --------------------------------
class _Editor:
    widget: W.Widget  # what the row shows
    input: W.Widget  # the main input widget (tests and users set `.value` on it)

    def get(self) -> Any:
        raise NotImplementedError

    def set(self, value: Any) -> None:
        raise NotImplementedError

    def observe(self, callback: Callable[[], None]) -> None:
        self.input.observe(lambda _change: callback(), names="value")

    def set_disabled(self, disabled: bool) -> None:
        if hasattr(self.input, "disabled"):
            self.input.disabled = disabled


class _ValueEditor(_Editor):
    """bool, int, float, Literal/Enum dropdowns: the widget value is the field value."""

    def __init__(self, widget: W.Widget, cast: Callable[[Any], Any] = lambda v: v):
        self.widget = self.input = widget
        self._cast = cast

    def get(self):
        return self.input.value

    def set(self, value):
        if value is _MISSING:
            return
        try:
            self.input.value = self._cast(value)
        except Exception as exc:  # a Dropdown refuses unknown options, a FloatText a string
            raise _FieldError(f"cannot show {value!r} in this field: {exc}") from None


class _TextEditor(_Editor):
    """str and Path fields (a Textarea when the text has several lines)."""

    def __init__(self, value: Any, *, is_path: bool, required: bool, multiline: bool = False):
        cls = W.Textarea if multiline else W.Text
        self.widget = self.input = cls(layout=W.Layout(width="420px" if multiline else _INPUT_W),
                                       placeholder="(path)" if is_path else "")
        self._is_path, self._required = is_path, required
        self.set(value)

    def get(self):
        text = self.input.value
        if text == "" and self._required:
            return _MISSING  # pydantic says "Field required" next to it
        return Path(text) if self._is_path and text else text

    def set(self, value):
        self.input.value = "" if value is _MISSING or value is None else str(value)


class _SeqEditor(_Editor):
    """list/tuple of scalars as comma-separated text (strings: one per line); pydantic converts the items."""

    def __init__(self, value: Any, *, of_str: bool, as_tuple: bool):
        self._of_str, self._as_tuple = of_str, as_tuple
        self.widget = self.input = (W.Textarea(layout=W.Layout(width="420px"), placeholder="one item per line")
                                    if of_str else W.Text(layout=W.Layout(width=_INPUT_W), placeholder="1, 2, 3"))
        self.set(value)

    def get(self):
        sep = "\n" if self._of_str else ","
        items = [s.strip() if not self._of_str else s for s in self.input.value.split(sep)]
        items = [s for s in items if s.strip()]
        return tuple(items) if self._as_tuple else items

    def set(self, value):
        if value is _MISSING or value is None:
            self.input.value = ""
            return
        self.input.value = ("\n" if self._of_str else ", ").join(str(v) for v in value)


class _JsonEditor(_Editor):
    """dict, lists of dicts and anything else JSON can hold (nested configs as dicts with their `__type__`)."""

    def __init__(self, value: Any):
        text = "" if value is _MISSING else json.dumps(_dump(value, True), ensure_ascii=False)
        long = len(text) > 60
        self.widget = self.input = (W.Textarea if long else W.Text)(
            layout=W.Layout(width="640px" if long else "420px", height="120px" if long else None), placeholder="JSON")
        self.set(value)

    def get(self):
        if not self.input.value.strip():
            return _MISSING
        try:
            return json.loads(self.input.value)
        except json.JSONDecodeError as exc:
            raise _FieldError(f"not valid JSON: {exc.msg} at character {exc.pos + 1}") from None

    def set(self, value):
        long = isinstance(self.input, W.Textarea)
        self.input.value = "" if value is _MISSING else json.dumps(_dump(value, True), ensure_ascii=False,
                                                                    indent=1 if long else None)


class _ReadOnlyEditor(_Editor):
    """Values no widget can edit (callables, tensors): shown and passed through unchanged."""

    def __init__(self, value: Any):
        self._value = value
        self.widget = self.input = W.Label(value="" if value is _MISSING else repr(value))

    def get(self):
        return self._value

    def set(self, value):
        self._value = value
        self.input.value = "" if value is _MISSING else repr(value)

    def observe(self, callback):
        pass


class _TupleEditor(_Editor):
    """Fixed-length tuples: one widget per item, side by side."""

    def __init__(self, items: list[_Editor]):
        self.items = items
        self.input = items[0].input if items else W.Label("()")
        self.widget = W.HBox([e.widget for e in items])
        for e in items:
            e.widget.layout.width = "110px"

    def get(self):
        values = [e.get() for e in self.items]
        return _MISSING if any(v is _MISSING for v in values) else tuple(values)

    def set(self, value):
        if value is _MISSING or value is None:
            return
        if len(value) != len(self.items):
            raise _FieldError(f"expected {len(self.items)} items, got {len(value)}")
        for e, v in zip(self.items, value):
            e.set(v)

    def observe(self, callback):
        for e in self.items:
            e.observe(callback)

    def set_disabled(self, disabled):
        for e in self.items:
            e.set_disabled(disabled)


class _OptionalEditor(_Editor):
    """`X | None`: a "None" checkbox beside the editor of X (X is disabled, or a sub-form hidden, while None)."""

    def __init__(self, make_inner: Callable[[Any], _Editor], value: Any, placeholder: Any):
        self._make_inner = make_inner
        self.inner = make_inner(placeholder if value is None or value is _MISSING else value)
        self.none = W.Checkbox(value=value is None, description="None", indent=False,
                               layout=W.Layout(width="70px"))
        self.input = self.inner.input
        self.widget = W.HBox([self.none, self.inner.widget]) if not isinstance(self.inner, _NestedEditor) \
            else W.VBox([self.none, self.inner.widget])
        self.none.observe(lambda _c: self._sync(), names="value")
        self._sync()

    def _sync(self):
        if isinstance(self.inner, _NestedEditor):
            self.inner.widget.layout.display = "none" if self.none.value else None
        else:
            self.inner.set_disabled(self.none.value)

    def get(self):
        return None if self.none.value else self.inner.get()

    def set(self, value):
        if value is _MISSING:
            return
        self.none.value = value is None
        if value is not None:
            self.inner.set(value)

    def observe(self, callback):
        self.none.observe(lambda _c: callback(), names="value")
        self.inner.observe(callback)


class _NestedEditor(_Editor):
    """A nested config: a collapsible sub-form."""

    def __init__(self, form: "ConfigForm", title: str):
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

    def __init__(self, classes: list[type[XConfig]], value: Any, path: str):
        self.classes, self._path = classes, path
        current = type(value) if isinstance(value, XConfig) else classes[0]
        self.pick = W.Dropdown(options=[(c.__name__, c) for c in classes], value=current,
                               layout=W.Layout(width=_INPUT_W))
        self.nested = _NestedEditor(ConfigForm(value if isinstance(value, XConfig) else current, _path=path,
                                               show_code=False), path.rsplit(".", 1)[-1])
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

    def __init__(self, item_cls: type[XConfig], value: Any, path: str):
        self.item_cls, self._path = item_cls, path
        self.forms: list[ConfigForm] = []
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
        form = ConfigForm(item if isinstance(item, XConfig) else self.item_cls, _path=f"{self._path}.{len(self.forms)}",
                          show_code=False)
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


def _is_config_class(t: Any) -> bool:
    return isinstance(t, type) and issubclass(t, XConfig)


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
    if isinstance(ann, type) and issubclass(ann, enum.Enum):
        return next(iter(ann))
    if _is_config_class(ann):
        return _try_default(ann) or ann
    return _MISSING


def _make_editor(ann: Any, value: Any, path: str, required: bool) -> _Editor:
    ann = _unwrap(ann)
    origin, args = get_origin(ann), get_args(ann)
    if origin in (Union, types.UnionType):
        members = [a for a in args if a is not _NONE_TYPE]
        if len(members) < len(args):  # Optional
            inner_ann = members[0] if len(members) == 1 else Union[tuple(members)]
            return _OptionalEditor(lambda v: _make_editor(inner_ann, v, path, required=False), value,
                                   _placeholder(inner_ann))
        if all(_is_config_class(m) for m in members):
            return _ChoiceEditor(members, value, path)
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
    if isinstance(ann, type) and issubclass(ann, PurePath):
        return _TextEditor(value, is_path=True, required=required)
    if origin is Literal:
        options = [(str(a), a) for a in args]
        start = value if value in args else args[0]
        return _ValueEditor(W.Dropdown(options=options, value=start, layout=W.Layout(width=_INPUT_W)))
    if isinstance(ann, type) and issubclass(ann, enum.Enum):
        return _ValueEditor(W.Dropdown(options=[(m.name, m) for m in ann],
                                       value=value if isinstance(value, ann) else next(iter(ann)),
                                       layout=W.Layout(width=_INPUT_W)), ann)
    if _is_config_class(ann):
        start = value if isinstance(value, XConfig) else ann
        return _NestedEditor(ConfigForm(start, _path=path, show_code=False), path.rsplit(".", 1)[-1])
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return _SeqEditor(value, of_str=_unwrap(args[0]) in (str, Path), as_tuple=True)
        if args and all(_unwrap(a) in (bool, int, float, str) or get_origin(_unwrap(a)) is Literal for a in args):
            vals = list(value) if isinstance(value, (tuple, list)) and len(value) == len(args) else [_MISSING] * len(args)
            return _TupleEditor([_make_editor(a, v, path, required) for a, v in zip(args, vals)])
    if origin in (list, typing.Sequence, set, frozenset) or ann in (list, tuple):
        item = _unwrap(args[0]) if args else Any
        item_members = [a for a in get_args(item) if a is not _NONE_TYPE] if get_origin(item) in (Union, types.UnionType) else [item]
        if item_members and all(_is_config_class(m) for m in item_members):
            return _ConfigListEditor(item_members[0], value, path)
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
        for name, info in cls.model_fields.items():
            if start is not None:
                value = getattr(start, name)
            elif not info.is_required():
                value = info.get_default(call_default_factory=True)
            else:
                value = _MISSING
            path = f"{self._path}.{name}" if self._path else name
            editor = _make_editor(info.annotation, value, path, required=info.is_required())
            row = FieldRow(name, path, editor, _description(cls, name))
            editor.observe(self._changed)
            self.rows[name] = row
        self.body.children = [r.widget for r in self.rows.values()]
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
def _description(cls: type[XConfig], name: str) -> str:
    # a preset subclass re-declares `num_hidden_layers: int = 28` and so drops the base class's description
    for klass in cls.__mro__:
        info = getattr(klass, "model_fields", {}).get(name)
        if info is not None and info.description:
            return info.description
    return ""


def _presets_for(cls: type[XConfig]) -> dict[str, type]:
    try:
        from ..model.config import presets_for
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
