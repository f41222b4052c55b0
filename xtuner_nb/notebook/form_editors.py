"""The widget editors of `ConfigForm`'s rows, one per kind of field value: a checkbox, a number, text or a path,
a sequence, a tuple of scalars, JSON, an Optional (a "None" box beside its inner editor), a read-only value.

Each editor reads and writes its widgets (`get`/`set`) and reports changes (`observe`); `get` raises `_FieldError`
for text that cannot even be parsed, before pydantic sees it. Editors of nested configs are in `form_nested.py`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

import ipywidgets as W

from ..config.base import _dump

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


# ---- editors: one per field type, each knows how to read and write its widgets --------------------------------
class _Editor:
    widget: W.Widget  # what the row shows
    input: W.Widget  # the main input widget (tests and users set `.value` on it)
    subform = False  # a nested config's collapsible sub-form: hidden, not disabled, while its Optional is None

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
        self.widget = W.HBox([self.none, self.inner.widget]) if not self.inner.subform \
            else W.VBox([self.none, self.inner.widget])
        self.none.observe(lambda _c: self._sync(), names="value")
        self._sync()

    def _sync(self):
        if self.inner.subform:
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
