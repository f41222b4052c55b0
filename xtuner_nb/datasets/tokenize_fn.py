"""Tokenize functions (XTuner's `CachableTokenizeFunction` protocol) and their configs.

A tokenize function turns one parsed jsonl record into `{"input_ids", "labels", "num_tokens"}` (labels unshifted,
-100 = no loss) and has a `hash()` that changes whenever its output could change: the tokenizer, the template,
`max_length` (unlike XTuner) and the code of this package's tokenization modules. The dataset cache is keyed by it.

Functions built from segments (`segments()` + `assemble()`) let the file reader encode many texts in one batched
call to the Rust tokenizer; the result is identical to encoding each segment with `tokenizer.encode`.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from pathlib import Path
from typing import Any

from pydantic import Field, field_validator

from ..config.base import XConfig
from .messages import Conversation, parse_conversation
from .chat_template_jinja import HF_TEMPLATE, hf_tokenize
from .chat_template_named import CHAT_TEMPLATE_MAP

IGNORE_INDEX = -100
_CODE_FILES = ("messages.py", "chat_template_named.py", "chat_template_jinja.py", "tokenize_fn.py", "formats.py",
               "sources.py")


def code_hash() -> str:
    """Hash of the tokenization code itself, so a change to it never reuses a stale cache."""
    here = Path(__file__).parent
    h = hashlib.sha256()
    for name in _CODE_FILES:
        h.update((here / name).read_bytes())
    return h.hexdigest()[:16]


def tokenizer_hash(tokenizer) -> str:
    """A stable content hash of a tokenizer (vocab, merges, added tokens, specials, chat template)."""
    h = hashlib.sha256(type(tokenizer).__name__.encode())
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        h.update(backend.to_str().encode())
        specials = {k: str(getattr(tokenizer, k, None)) for k in ("bos_token", "eos_token", "pad_token", "unk_token")}
        h.update(json.dumps(specials, sort_keys=True).encode())
        h.update(str(getattr(tokenizer, "chat_template", None)).encode())
    elif type(tokenizer).__name__ == "UTF8ByteTokenizer":
        h.update(repr(tokenizer).encode())
    else:  # any other tokenizer: hash what save_pretrained writes, as XTuner does
        with tempfile.TemporaryDirectory() as tmp:
            tokenizer.save_pretrained(tmp)
            for f in sorted(Path(tmp).rglob("*")):
                if f.is_file():
                    h.update(f.name.encode())
                    h.update(f.read_bytes())
    return h.hexdigest()


def encode_texts(tokenizer, texts: list[str], _state: dict | None = None) -> list[list[int]]:
    """`[tokenizer.encode(t, add_special_tokens=False) for t in texts]`, batched through the Rust tokenizer when it
    gives the same ids (checked on the first texts, once per tokenizer)."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    state = _state if _state is not None else {}
    if backend is not None and texts and state.get("batch_ok") is None:
        probe = texts[:16]
        state["batch_ok"] = [e.ids for e in backend.encode_batch(probe, add_special_tokens=False)] == [
            tokenizer.encode(t, add_special_tokens=False) for t in probe]
    if backend is not None and state.get("batch_ok"):
        return [e.ids for e in backend.encode_batch(texts, add_special_tokens=False)]
    return [tokenizer.encode(t, add_special_tokens=False) for t in texts]


def assemble_segments(encoded: list[list[int]], segments: list[tuple[str, bool]]) -> dict:
    """The ids of the encoded segments one after the other; labels = the ids of trained segments, -100 elsewhere."""
    ids: list[int] = []
    labels: list[int] = []
    for seg_ids, (_text, trained) in zip(encoded, segments):
        ids.extend(seg_ids)
        labels.extend(seg_ids if trained else [IGNORE_INDEX] * len(seg_ids))
    return {"input_ids": ids, "labels": labels, "num_tokens": len(ids)}


class CachableTokenizeFunction:
    """Base of tokenize functions. Subclasses implement `__call__` (and `hash`), or `segments` + `assemble`."""

    def __init__(self, tokenizer, *args, llm_pack_weight: float = 1.0, visual_pack_weight: float = 0.0, **kwargs):
        self.tokenizer = tokenizer
        # XTuner's weights of the text and image tokens in the attention-cost estimate; text only here
        self.llm_pack_weight, self.visual_pack_weight = llm_pack_weight, visual_pack_weight
        self.state = "cache"  # XTuner's attribute; here tokenization happens once, at build
        self._encode_state: dict = {}

    def segments(self, item: Any) -> list[tuple[str, bool]] | None:
        """`(text, trained)` pieces encoded separately, or None when `__call__` must tokenize the item itself."""
        return None

    def assemble(self, item: Any, encoded: list[list[int]], segments: list[tuple[str, bool]]) -> dict:
        return assemble_segments(encoded, segments)

    def __call__(self, item: Any, **kwargs) -> dict:
        segs = self.segments(item)
        if segs is None:
            raise NotImplementedError(f"{type(self).__name__} must implement __call__ or segments")
        return self.assemble(item, encode_texts(self.tokenizer, [t for t, _ in segs], self._encode_state), segs)

    def hash(self) -> str:
        raise NotImplementedError

    def set_state(self, state: str) -> None:
        """XTuner's "cache" / "runtime" switch; tokenization happens once here, so it changes nothing."""
        self.state = state

    def proxy_attention_flops(self, num_tokens: int, num_img_tokens: list[int] = (0,),
                              flash_attn_block_size: int = 128) -> float:
        """XTuner's attention-cost estimate of a sample (`packing.attention_cost`), its image tokens weighed by
        `visual_pack_weight`."""
        from .packing import attention_cost

        images = sum((n / flash_attn_block_size) ** 2 for n in num_img_tokens)
        text = int(attention_cost([num_tokens], flash_attn_block_size)[0])
        return self.llm_pack_weight * text + self.visual_pack_weight * images


class OpenaiTokenizeFunction(CachableTokenizeFunction):
    reads_messages = True  # the file reader converts ShareGPT / Alpaca / LLaMA-Factory records for it

    def __init__(self, tokenizer, chat_template: str, tokenizer_hash: str | None = None,
                 max_length: int | None = None, hash: str | None = None):
        if chat_template != HF_TEMPLATE and chat_template not in CHAT_TEMPLATE_MAP:
            raise ValueError(f"chat_template {chat_template!r} not found; choose one of "
                             f"{sorted(CHAT_TEMPLATE_MAP) + [HF_TEMPLATE]}")
        super().__init__(tokenizer)
        self.chat_template_name = chat_template
        self.chat_template = CHAT_TEMPLATE_MAP.get(chat_template)
        self.max_length = max_length
        self._tokenizer_hash = tokenizer_hash
        self._hash = hash

    def parse(self, item: Any) -> Conversation:
        return parse_conversation(item)

    def segments(self, item: Any) -> list[tuple[str, bool]] | None:
        if self.chat_template is None:  # "hf": one rendering, encoded whole (see __call__)
            return None
        return self.chat_template.render(self.parse(item))

    def assemble(self, item, encoded, segments) -> dict:
        out = super().assemble(item, encoded, segments)
        if getattr(segments, "dropped", None):  # what the template left out, counted by the file reader
            out["dropped"] = segments.dropped
        return self._truncate(out)

    def __call__(self, item: Any, **kwargs) -> dict:
        if self.chat_template is not None:
            return super().__call__(item)
        ids, labels, dropped = hf_tokenize(self.tokenizer, self.parse(item))
        out = {"input_ids": ids, "labels": labels, "num_tokens": len(ids)}
        if dropped:
            out["dropped"] = dropped
        return self._truncate(out)

    def _truncate(self, out: dict) -> dict:
        n = out["num_tokens"]
        if self.max_length is not None and n > self.max_length:
            # counted and reported once per file by the reader (XTuner logs one line per sample)
            out = {**out, "input_ids": out["input_ids"][: self.max_length],
                   "labels": out["labels"][: self.max_length], "num_tokens": self.max_length,
                   "num_tokens_before_truncation": n}
        return out

    def hash(self) -> str:
        if self._hash is None:
            tok = (self._tokenizer_hash or tokenizer_hash(self.tokenizer))[:16]
            template = repr(self.chat_template) if self.chat_template is not None else \
                f"hf:{getattr(self.tokenizer, 'chat_template', None)}"
            tmpl = hashlib.sha256(template.encode()).hexdigest()[:16]
            self._hash = f"{tok}_{tmpl}_len{self.max_length}_{code_hash()}"
        return self._hash


class PretrainTokenizeFunction(CachableTokenizeFunction):
    """`{"content": text}` (or `{"text": ...}`, or `{"messages": [{"role": "pretrain", ...}]}`): every token is
    trained except the first label; EOS appended by default."""

    def __init__(self, tokenizer, add_eos_token: bool = True, add_bos_token: bool = False,
                 tokenizer_hash: str | None = None, hash: str | None = None):
        super().__init__(tokenizer)
        self.add_eos_token, self.add_bos_token = add_eos_token, add_bos_token
        self._tokenizer_hash, self._hash = tokenizer_hash, hash

    def segments(self, item: Any) -> list[tuple[str, bool]]:
        if isinstance(item, dict) and "messages" in item:
            conv = parse_conversation(item)
            if not conv.messages or conv.messages[0].role != "pretrain":
                raise ValueError("messages[0] must have role 'pretrain'")
            text = conv.messages[0].text
        elif isinstance(item, dict) and isinstance(item.get("content", item.get("text")), str):
            text = item.get("content", item.get("text"))
        else:
            raise ValueError("a pretraining line needs {\"content\": \"...\"} or "
                             "{\"messages\": [{\"role\": \"pretrain\", \"content\": \"...\"}]}")
        tok = self.tokenizer
        if self.add_bos_token and getattr(tok, "bos_token", None):
            text = tok.bos_token + text
        if self.add_eos_token and getattr(tok, "eos_token", None):
            text = text + tok.eos_token
        return [(text, True)]

    def assemble(self, item, encoded, segments) -> dict:
        ids = list(encoded[0])
        tok = self.tokenizer
        # tokenizers without special *strings* (UTF8ByteTokenizer) get the ids directly
        if self.add_bos_token and not getattr(tok, "bos_token", None):
            if getattr(tok, "bos_token_id", None) is None:
                raise ValueError("add_bos_token=True but the tokenizer has no bos token")
            ids = [tok.bos_token_id] + ids
        if self.add_eos_token and not getattr(tok, "eos_token", None):
            if getattr(tok, "eos_token_id", None) is None:
                raise ValueError("add_eos_token=True but the tokenizer has no eos token")
            ids = ids + [tok.eos_token_id]
        labels = list(ids)
        if labels:
            labels[0] = IGNORE_INDEX
        return {"input_ids": ids, "labels": labels, "num_tokens": len(ids)}

    def hash(self) -> str:
        if self._hash is None:
            tok = (self._tokenizer_hash or tokenizer_hash(self.tokenizer))[:16]
            self._hash = f"{tok}_pretrain_bos{int(self.add_bos_token)}_eos{int(self.add_eos_token)}_{code_hash()}"
        return self._hash


class OpenaiTokenizeFunctionConfig(XConfig):
    chat_template: str = Field(..., description="Chat template: 'qwen3', 'llama3', 'deepseek-v3' (XTuner's exact "
                                                "strings, per-message encoding) or 'hf' (the tokenizer's own "
                                                "jinja template, assistant mask derived from it).")
    max_length: int | None = Field(None, gt=0, description="Truncate each tokenized sample to this many tokens "
                                                           "(None: no limit). Part of the cache key.")
    hash: str | None = Field(None, description="Pin the cache key of this tokenize function yourself "
                                               "(None: derived from tokenizer, template, max_length and code).")

    @field_validator("chat_template")
    @classmethod
    def _known_template(cls, v: str) -> str:
        if v != HF_TEMPLATE and v not in CHAT_TEMPLATE_MAP:
            raise ValueError(f"unknown chat_template {v!r}; choose one of {sorted(CHAT_TEMPLATE_MAP) + [HF_TEMPLATE]}")
        return v

    def build(self, tokenizer, tokenizer_hash: str | None = None, anno_name: str | None = None,
              **kwargs) -> OpenaiTokenizeFunction:
        return OpenaiTokenizeFunction(tokenizer, chat_template=self.chat_template, tokenizer_hash=tokenizer_hash,
                                      max_length=self.max_length, hash=self.hash)


class PretrainTokenizeFunctionConfig(XConfig):
    add_eos_token: bool = Field(True, description="Append the tokenizer's EOS token to every text.")
    add_bos_token: bool = Field(False, description="Prepend the tokenizer's BOS token to every text.")
    hash: str | None = Field(None, description="Pin the cache key of this tokenize function yourself.")

    def build(self, tokenizer, tokenizer_hash: str | None = None, anno_name: str | None = None,
              **kwargs) -> PretrainTokenizeFunction:
        return PretrainTokenizeFunction(tokenizer, add_eos_token=self.add_eos_token,
                                        add_bos_token=self.add_bos_token, tokenizer_hash=tokenizer_hash,
                                        hash=self.hash)
