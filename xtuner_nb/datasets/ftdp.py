"""XTuner's FTDP format (`FTDPTokenizeFnConfig`, `xtuner.v1.datasets.ftdp`): InternLM's fine-tuning dialogs, each
role wrapped by a template, loss decided per role and per message.

A record is a list of messages (or `{"dialogs": [...]}`), each `{"role", "content"}` with optional `name`, `loss`
(false: no loss) and `type` (the loss kind: "current" by default, "icl", "prefix", "meta"). Roles: system, user,
assistant, environment, knowledge, pretrain_meta / pretrain_content, answer_prefix / answer_middle /
answer_postfix; `tool` and `thought` messages are merged into the assistant turn before them. A role's `begin`
(with or without a name) and `end` strings come from the template; the begin is never trained, the content is
unless its role's loss table says no for its `type`, the end only when the table's `end` is true.
Tokens are encoded as XTuner does: `begin + content + end` in one call, then split by the lengths of the begin and
end encoded alone. The BOS id (when the tokenizer has one) comes first; the first label is never trained; the
sample is cut to `max_length` (default: the template's `max_len`, else 32768).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from pydantic import Field

from ..config.base import XConfig
from .tokenize_fn import IGNORE_INDEX, CachableTokenizeFunction, tokenizer_hash

MAX_LEN = 32 * 1024
_NO_LOSS = {"icl": False, "current": False, "prefix": False}
_REPLY_LOSS = {"icl": True, "current": True, "prefix": False, "end": True}
_PLAIN = {"with_name": "", "without_name": ""}


def _template(header, turn_end: str, reply_end: str, pretrain_end: str, names: dict[str, dict[str, str]],
              tool: tuple[str, str], max_len: int | None) -> dict[str, Any]:
    """One template's role table. `header(role)` -> (begin with a name, begin without one); `names[role]`: how a
    message's `name` is spelled for that role (e.g. "interpreter" -> "<|interpreter|>")."""

    def role(name: str, end: str, loss: dict, spelled: dict | None = None) -> dict:
        with_name, without_name = header(name)
        begin = {"with_name": with_name, "without_name": without_name, **({"name": spelled} if spelled else {})}
        return {"begin": begin, "end": end, "loss": loss}

    table = {
        "knowledge": {"begin": {"without_name": header("knowledge")[1]}, "end": reply_end, "loss": _NO_LOSS},
        "pretrain_meta": {"begin": _PLAIN, "end": "", "loss": {**_NO_LOSS, "end": False}},
        "pretrain_content": {"begin": _PLAIN, "end": pretrain_end, "loss": _REPLY_LOSS},
        "system": role("system", turn_end, {"meta": False, **_NO_LOSS}, names["system"]),
        "user": role("user", turn_end, _NO_LOSS),
        "answer_prefix": role("assistant", "", _NO_LOSS),
        "answer_middle": {"begin": _PLAIN, "end": "", "loss": {"icl": False, "current": True, "prefix": False}},
        "answer_postfix": {"begin": _PLAIN, "end": reply_end, "loss": _REPLY_LOSS},
        "assistant": role("assistant", reply_end, _REPLY_LOSS, names["assistant"]),
        "environment": role("environment", turn_end, _NO_LOSS, names["environment"]),
        "tool": {"begin": {"with_name": tool[0], "name": names["tool"]}, "end": tool[1], "belong": "assistant"},
        "thought": {"begin": {"without_name": ""}, "end": "", "belong": "assistant"},
    }
    return {**table, "max_len": max_len} if max_len is not None else table


def _chatml(role: str) -> tuple[str, str]:
    return f"<|im_start|>{role} name={{name}}\n", f"<|im_start|>{role}\n"


def _deepseek(role: str) -> tuple[str, str]:
    tag = f"<｜{role.capitalize()}｜>"
    return f"{tag} name={{name}}", tag


_INTERN = {"interpreter": "<|interpreter|>", "plugin": "<|plugin|>"}
_QWEN = {"interpreter": "<|repo_name|>", "plugin": "<|file_sep|>"}
_DEEPSEEK = {"interpreter": "<｜Interpreter｜>", "plugin": "<｜Plugin｜>"}
_IM_END = "<|im_end|>\n"
_INTERNLM2 = _template(_chatml, _IM_END, _IM_END, "</s>", dict.fromkeys(("system", "assistant", "environment",
                       "tool"), _INTERN), ("<|action_start|>{name}\n", "<|action_end|>\n"), MAX_LEN)
_QWEN_T = _template(_chatml, _IM_END, _IM_END, "<|endoftext|>", dict.fromkeys(("system", "assistant", "environment",
                    "tool"), _QWEN), ("<tool_call>{name}\n", "</tool_call>\n"), None)
ROLE_CONFIG: dict[str, dict[str, Any]] = {
    "internlm2": _INTERNLM2,
    "qwen": _QWEN_T,
    "qwen2": _QWEN_T,
    "qwen_intern": {**{k: v for k, v in _INTERNLM2.items() if k != "max_len"},
                    "pretrain_content": _QWEN_T["pretrain_content"]},
    "internlm2_128k": {**_INTERNLM2, "max_len": 128 * 1024},
    "deepseekv3": _template(_deepseek, "", "<｜end▁of▁sentence｜>", "<｜end▁of▁sentence｜>",
                            dict.fromkeys(("system", "assistant", "environment", "tool"), _DEEPSEEK),
                            ("<｜ActionStart｜>", "<｜ActionEnd｜>"), MAX_LEN),
}
_MERGED_OR_KEPT = {"assistant", "user", "system", "environment", "pretrain_content", "pretrain_meta",
                   "answer_prefix", "answer_middle", "answer_postfix"}


def format_begin(role_cfg: dict, message: dict) -> str:
    name = message.get("name")
    if name is None:
        return role_cfg["begin"].get("without_name", "")
    spelled = role_cfg["begin"].get("name", {})
    return role_cfg["begin"].get("with_name", "").format(name=spelled.get(name, name))


def format_sub_role(messages: list[dict], roles_cfg: dict) -> list[dict]:
    """Messages of the sub-roles (tool, thought, knowledge) wrapped in their begin/end and merged into the turn
    they belong to."""
    out: list[dict] = []
    for msg in messages:
        if msg["role"] in _MERGED_OR_KEPT:
            out.append(msg)
            continue
        if msg["role"] not in roles_cfg:
            raise ValueError(f"unknown FTDP role {msg['role']!r} (roles: {', '.join(sorted(_MERGED_OR_KEPT))}, "
                             "tool, thought, knowledge)")
        cfg = roles_cfg[msg["role"]]
        text = format_begin(cfg, msg) + msg["content"] + cfg["end"]
        owner = cfg.get("fallback_role") or cfg.get("belong")
        if cfg.get("belong") and out and out[-1]["role"] == owner:
            out[-1] = {**out[-1], "content": out[-1]["content"] + text}
        else:
            out.append({"role": owner or msg["role"], "content": text})
    return out


def ftdp_tokenize(tokenizer, messages: list[dict] | dict, template_config: dict, max_length: int | None = None
                  ) -> dict:
    """One FTDP record -> `{"input_ids", "labels", "num_tokens"}` (see the module docstring). Untrained tokens are
    carried as negative ids until the labels are made (XTuner's way; a token id 0 therefore always counts as
    trained)."""
    if isinstance(messages, dict) and "dialogs" in messages:
        messages = messages["dialogs"]
    encode = lambda text: tokenizer.encode(text, add_special_tokens=False)  # noqa: E731
    signed: list[int] = []
    for msg in format_sub_role(messages, template_config):
        cfg = template_config[msg["role"]]
        begin, end = format_begin(cfg, msg), cfg["end"]
        begin_ids, end_ids = encode(begin), encode(end)
        if not cfg["loss"].get("begin", False):
            begin_ids = [-t for t in begin_ids]
        whole = encode(begin + msg["content"] + end)
        content_ids = whole[len(begin_ids):] if end == "" else whole[len(begin_ids):-len(end_ids)]
        loss = cfg["loss"] if msg.get("loss", True) else {"icl": False, "current": False, "meta": False, "end": False}
        kind = msg.get("type", "current")
        if kind in loss and not loss[kind]:
            content_ids = [-t for t in content_ids]
        if not loss.get("end", False):
            end_ids = [-t for t in end_ids]
        signed += (begin_ids if begin else []) + content_ids + (end_ids if end else [])
    if tokenizer.bos_token_id:  # Qwen tokenizers have none
        signed = [tokenizer.bos_token_id] + signed
    before = len(signed)
    signed = signed[: max_length or template_config.get("max_len", MAX_LEN)]
    labels = [t if t >= 0 else IGNORE_INDEX for t in signed]
    if labels:
        labels[0] = IGNORE_INDEX
    out = {"input_ids": [abs(t) for t in signed], "labels": labels, "num_tokens": len(signed)}
    if before > len(signed):
        out["num_tokens_before_truncation"] = before  # counted and reported once per file by the reader
    return out


class FtdpTokenizeFunction(CachableTokenizeFunction):
    def __init__(self, tokenizer, chat_template: str = "internlm2", tokenizer_hash: str | None = None,
                 max_length: int | None = None, hash: str | None = None):
        if chat_template not in ROLE_CONFIG:
            raise ValueError(f"FTDP chat_template {chat_template!r} not found; choose one of {sorted(ROLE_CONFIG)}")
        super().__init__(tokenizer)
        self.chat_template_name, self.template_config = chat_template, ROLE_CONFIG[chat_template]
        self.max_length, self._tokenizer_hash, self._hash = max_length, tokenizer_hash, hash

    def __call__(self, item: dict | list, **kwargs) -> dict:
        return ftdp_tokenize(self.tokenizer, item, self.template_config, max_length=self.max_length)

    def hash(self) -> str:
        if self._hash is None:
            tok = (self._tokenizer_hash or tokenizer_hash(self.tokenizer))[:16]
            table = hashlib.sha256(repr(self.template_config).encode()).hexdigest()[:16]
            code = hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:16]
            self._hash = f"{tok}_ftdp_{table}_len{self.max_length}_{code}"
        return self._hash


class FTDPTokenizeFnConfig(XConfig):
    chat_template: str = Field("internlm2", description="FTDP role template: internlm2, internlm2_128k, qwen, qwen2, "
                                                        "qwen_intern or deepseekv3.")
    max_length: int | None = Field(None, gt=0, description="Cut each sample to this many tokens (None: the "
                                                           "template's max_len, else 32768).")
    hash: str | None = Field(None, description="Pin the cache key of this tokenize function yourself.")

    def build(self, tokenizer, tokenizer_hash: str | None = None, anno_name: str | None = None,
              **kwargs) -> FtdpTokenizeFunction:
        return FtdpTokenizeFunction(tokenizer, chat_template=self.chat_template, tokenizer_hash=tokenizer_hash,
                                    max_length=self.max_length, hash=self.hash)
