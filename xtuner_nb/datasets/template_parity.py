"""Training template vs the tokenizer's own: do they give the model the same tokens?

Training with one of XTuner's named templates (`qwen3`, ...) renders conversations with XTuner's format strings;
an inference engine that prompts with the tokenizer's own Jinja template may show the model other tokens (Qwen3's
official template writes `<think>\\n\\n</think>` into the last answer, SmolLM2's adds a default system prompt).
`compare_templates` renders the first conversations of a file both ways and keeps one differing conversation to
show side by side. The export carries the training template (`chat_template_export.py`), so a difference here
tells what changes for anyone who prompts the model with the original tokenizer's template.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from .chat_template_jinja import HF_TEMPLATE, hf_messages, hf_tokenize
from .chat_template_named import CHAT_TEMPLATE_MAP
from .formats import convert
from .messages import parse_conversation
from .sources import iter_records, read_source
from .tokenize_fn import encode_texts

COMPARED = 32  # conversations rendered both ways per file: enough to see a systematic difference, in well under 1 s


@dataclass
class TemplateComparison:
    """`training` (a named template) against the tokenizer's own template on the first `compared` conversations of
    `path`; `differing` of them give other tokens. `example_at` ("path:line"), `training_text` and
    `tokenizer_text` show the first differing conversation; `first_difference` is the character where they part.
    `tokenizer_template`: False when the tokenizer has no chat template of its own (nothing to compare with)."""

    training: str
    path: str
    compared: int = 0
    differing: int = 0
    example_at: str | None = None
    training_text: str = ""
    tokenizer_text: str = ""
    first_difference: int = 0
    tokenizer_template: bool = True

    @property
    def same(self) -> bool:
        return self.tokenizer_template and self.differing == 0


def read_conversations(path: str | Path, data_format: str, lines: set[int] | None = None,
                       limit: int | None = None) -> Iterator[tuple[int, Any]]:
    """`(line, record in OpenAI messages form)` of a data file, as the reader converted them for training; only the
    records at `lines` when given; records that do not parse are passed over (training skipped or refused them)."""
    data, _ = read_source(path)
    taken = 0
    for no, rec in iter_records(path, data, True, [], None):
        if lines is not None and no not in lines:
            continue
        try:
            yield no, convert(rec, data_format)
        except ValueError:
            continue
        taken += 1
        if limit is not None and taken >= limit:
            return


def compare_templates(template: str, path: str | Path, data_format: str, tokenizer,
                      n: int = COMPARED) -> TemplateComparison | None:
    """None for `hf` and unknown templates (training already renders with the tokenizer's own)."""
    if template == HF_TEMPLATE or template not in CHAT_TEMPLATE_MAP:
        return None
    out = TemplateComparison(training=template, path=str(path))
    own = getattr(tokenizer, "chat_template", None)
    if not isinstance(own, str) or not own:
        out.tokenizer_template = False
        return out
    named = CHAT_TEMPLATE_MAP[template]
    for no, rec in read_conversations(path, data_format, limit=n):
        try:
            conv = parse_conversation(rec)
            segments = named.render(conv)
        except ValueError:
            continue  # what training refused was reported when the data were read
        try:
            theirs_ids = hf_tokenize(tokenizer, conv)[0]
            theirs = None
        except Exception as exc:  # noqa: BLE001 - a template may refuse a conversation (raise_exception, ...)
            theirs_ids, theirs = None, f"(the tokenizer's chat template refuses this conversation: {exc})"
        ours = "".join(text for text, _ in segments)
        ours_ids = [t for ids in encode_texts(tokenizer, [s for s, _ in segments]) for t in ids]
        out.compared += 1
        if ours_ids == theirs_ids:
            continue
        out.differing += 1
        if out.example_at is None:
            theirs = theirs or tokenizer.apply_chat_template(hf_messages(conv), tools=conv.tools, tokenize=False)
            out.example_at, out.training_text, out.tokenizer_text = f"{path}:{no}", ours, theirs
            out.first_difference = next((k for k, (a, b) in enumerate(zip(ours, theirs)) if a != b),
                                        min(len(ours), len(theirs)))
    return out


def describe(c: TemplateComparison) -> str:
    if not c.tokenizer_template:
        return (f"the tokenizer has no chat template of its own; the export will carry the {c.training!r} template "
                "used in training")
    if c.same:
        return (f"the {c.training!r} template and the tokenizer's own give the same tokens on the {c.compared} "
                f"conversations compared ({c.path})")
    k = c.first_difference
    return (f"the {c.training!r} template used in training and the tokenizer's own chat template give different "
            f"tokens on {c.differing} of {c.compared} conversations (first: {c.example_at}; from character {k}: "
            f"training {c.training_text[k:k + 40]!r} vs tokenizer {c.tokenizer_text[k:k + 40]!r}). The export "
            f"carries the {c.training!r} template, so engines that read it prompt the model as it was trained; "
            "prompting with the original checkpoint's template would not")
