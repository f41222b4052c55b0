"""The chat template an export carries: the one the model was trained with.

A model prompts well only with the template it was trained on. Training with one of XTuner's named templates
(`chat_template="qwen3"`, ...) renders conversations with format strings, not with the tokenizer's Jinja template,
so an export that kept the tokenizer's own template would be prompted differently by vLLM, llama.cpp, Ollama and
transformers (Qwen3's own template adds `<think>` blocks, SmolLM2's a default system prompt). `jinja_of` writes a
named template as Jinja, rendering exactly XTuner's text: the assistant header is part of the user (and tool) turn,
as in XTuner, so the generation prompt adds a header only after a turn that has none (an assistant or system turn).
`export_chat_template` decides, once, which template an export of a run carries; the pre-flight report says it and
`model/hf_save.py` writes it.
"""

from __future__ import annotations

from dataclasses import dataclass
from string import Formatter
from typing import Any

from .chat_template_jinja import HF_TEMPLATE
from .chat_template_named import CHAT_TEMPLATE_MAP, HybridChatTemplate


@dataclass(frozen=True)
class ExportTemplate:
    """`name`: the training template ("qwen3", "hf", None for data without one); `jinja`: the template the export
    writes, or None to keep the tokenizer's own (`hf`, pretraining data)."""

    name: str | None
    jinja: str | None

    def describe(self) -> str:
        if self.jinja is None:
            return "the tokenizer's own chat template, unchanged" + (
                "" if self.name == HF_TEMPLATE else " (the training data use no chat template)")
        return f"the {self.name!r} template used in training (as Jinja), in place of the tokenizer's own"


def export_chat_template(dataset_config_list: list[dict[str, Any]] | None) -> ExportTemplate:
    """The template of the first dataset's tokenize function, as the export will carry it."""
    names = [getattr(e["tokenize_fn"], "chat_template", None) for e in dataset_config_list or []]
    name = next((n for n in names if isinstance(n, str)), None)
    if name is None or name == HF_TEMPLATE or name not in CHAT_TEMPLATE_MAP:
        return ExportTemplate(name, None)
    return ExportTemplate(name, jinja_of(CHAT_TEMPLATE_MAP[name]))


def end_of_turn_text(template: HybridChatTemplate) -> str:
    """What closes an assistant turn (`<|im_end|>` for qwen3): the assistant format after `{assistant}`."""
    return template.assistant.split("{assistant}", 1)[1].strip()


def assistant_header(template: HybridChatTemplate) -> str:
    """What opens an assistant turn: the user format after its end of turn (XTuner puts the header there)."""
    after_user = _split(template.user, "user")[1]
    eot = end_of_turn_text(template)
    header = after_user.split(eot, 1)[1] if eot and eot in after_user else after_user
    return header[len(template.sep):] if template.sep and header.startswith(template.sep) else header


def _split(fmt: str, field: str) -> tuple[str, str]:
    """`fmt` around its one `{field}`, with `{{`/`}}` unescaped: ("<|im_start|>user\\n", "<|im_end|>\\n...")."""
    before, after, seen = "", "", False
    for literal, name, _spec, _conv in Formatter().parse(fmt):
        if seen:
            after += literal
        else:
            before += literal
        if name is not None:
            if name != field or seen:
                raise ValueError(f"chat template format {fmt!r}: expected one {{{field}}}, found {{{name}}}")
            seen = True
    if not seen:
        raise ValueError(f"chat template format {fmt!r} has no {{{field}}}")
    return before, after


def _lit(text: str) -> str:
    """A Jinja string literal (single-quoted; only quote, backslash and line breaks escaped, which every Jinja
    engine reads the same: Python's jinja2, llama.cpp's minja, @huggingface/jinja)."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'").replace("\n", "\\n").replace("\r", "\\r") \
        .replace("\t", "\\t") + "'"


def _wrap(fmt: str | None, field: str, what: str, role: str) -> str:
    if fmt is None:
        return f"{{{{- raise_exception('this chat template has no {role} role') }}}}"
    before, after = _split(fmt, field)
    return f"{{{{- {_lit(before)} + {what} + {_lit(after)} }}}}"


_TEXT = ("{%- set ns.text = '' %}{%- if message.content is string %}{%- set ns.text = message.content %}"
         "{%- elif message.content %}{%- for part in message.content %}{%- if part.type == 'text' %}"
         "{%- set ns.text = ns.text + part.text %}{%- endif %}{%- endfor %}{%- endif %}")
_TOOL_CALLS = ("{%- if message.tool_calls %}{%- set ns.calls = '' %}{%- for call in message.tool_calls %}"
               "{%- set fn = call.function if call.function is defined else call %}"
               "{%- set args = fn.arguments if fn.arguments is string else fn.arguments | tojson %}"
               "{%- set ns.calls = ns.calls + ('\\n' if not loop.first else '') + '<tool_call>\\n{\"name\": ' + "
               "(fn.name | tojson) + ', \"arguments\": ' + args + '}\\n</tool_call>' %}{%- endfor %}"
               "{%- set ns.text = ns.text + '\\n' + ns.calls if ns.text else ns.calls %}{%- endif %}")


def jinja_of(t: HybridChatTemplate) -> str:
    """A Jinja chat template that renders a conversation to the same text as `t.render` (XTuner's rendering):
    default system prompt, tool schemas appended to the system turn, tool calls as `<tool_call>` blocks, thinking
    on the last assistant turn only. Tool-call arguments given as a JSON string are written as they are (XTuner
    re-dumps them, so a string not in `json.dumps` form renders differently)."""
    tools = ""
    if t.tool_prompt is not None:
        tp_before, tp_after = _split(t.tool_prompt, "tool_text")
        tools = ("{%- if tools %}{%- set ns.tools = '' %}{%- for tool in tools %}"
                 "{%- set wrapped = tool if tool.type == 'function' else {'type': 'function', 'function': tool} %}"
                 "{%- set ns.tools = ns.tools + '\\n' + (wrapped | tojson) %}{%- endfor %}"
                 f"{{%- set ns.tool_text = {_lit(tp_before)} + ns.tools + {_lit(tp_after)} %}}{{%- endif %}}")
    else:
        tools = "{%- if tools %}{{- raise_exception('this chat template has no tool prompt') }}{%- endif %}"
    default = _lit(t.default_system) if t.default_system is not None else "''"
    thinking = "" if t.thinking is None else (
        "{%- if loop.last and message.thinking is defined and message.thinking is not none %}"
        f"{{%- set ns.text = {_lit(_split(t.thinking, 'thinking')[0])} + message.thinking + "
        f"{_lit(_split(t.thinking, 'thinking')[1])} + ns.text %}}{{%- endif %}}")
    body = "ns.text"
    for old, new in t.loss_assistant_format_mapping.items():
        body = f"({body}).replace({_lit(old)}, {_lit(new)})"
    sep = f"{{{{- {_lit(t.sep)} }}}}" if t.sep else ""
    return "".join([
        "{%- set ns = namespace(text='', calls='', tools='', tool_text='') %}",
        tools,
        "{%- if not messages or messages[0].role != 'system' %}",
        f"{{%- if {default} or ns.tool_text %}}", _wrap(t.system, "system", f"{default} + ns.tool_text", "system"),
        "{%- endif %}{%- endif %}",
        "{%- for message in messages %}", _TEXT,
        "{%- if message.role == 'system' %}",
        _wrap(t.system, "system", "ns.text + (ns.tool_text if loop.first else '')", "system"),
        "{%- elif message.role == 'developer' %}", _wrap(t.developer, "developer", "ns.text", "developer"),
        "{%- elif message.role == 'user' %}", _wrap(t.user, "user", "ns.text", "user"),
        "{%- elif message.role == 'tool' %}", _wrap(t.tool_extractor, "tool_extractor", "ns.text", "tool"),
        "{%- elif message.role == 'pretrain' %}{{- ns.text }}",
        "{%- elif message.role == 'assistant' %}", _TOOL_CALLS, thinking,
        _wrap(t.assistant, "assistant", body, "assistant"), sep,
        "{%- else %}{{- raise_exception('unknown role ' + message.role) }}{%- endif %}",
        "{%- endfor %}",
        "{%- if add_generation_prompt and (not messages or messages[-1].role not in ['user', 'tool']) %}",
        f"{{{{- {_lit(assistant_header(t))} }}}}{{%- endif %}}",
    ])
