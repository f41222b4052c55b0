"""XTuner's `UTF8ByteTokenizer`: the tokenizer a run and a data loader use when none is given (`tokenizer_path=None`).

Token ids are the UTF-8 bytes 0..255; bos=256, eos=257, pad=258; `<img>`=259, `<IMG_CONTEXT>`=260, `</img>`=261
(those strings become their id while encoding). `vocab_size` is 262. Chat-template strings such as `<|im_end|>` are
plain bytes here, exactly as in XTuner, so any template works without special tokens.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal


class UTF8ByteTokenizer:
    """Byte-level toy tokenizer with XTuner's ids; enough of the transformers interface for the data pipeline."""

    def __init__(self, bos_token_id: int | None = 256, eos_token_id: int | None = 257, pad_token_id: int | None = 258,
                 image_start_id_map: dict[str, int] | None = None, image_context_id_map: dict[str, int] | None = None,
                 image_end_id_map: dict[str, int] | None = None):
        self.bos_token_id, self.eos_token_id, self.pad_token_id = bos_token_id, eos_token_id, pad_token_id
        self._specials: list[tuple[str, int]] = [
            next(iter((image_start_id_map or {"<img>": 259}).items())),
            next(iter((image_context_id_map or {"<IMG_CONTEXT>": 260}).items())),
            next(iter((image_end_id_map or {"</img>": 261}).items())),
        ]
        self._special_to_id = dict(self._specials)
        self._split_re = re.compile("(" + "|".join(re.escape(k) for k in self._special_to_id) + ")")
        self.special_ids = {x for x in (bos_token_id, eos_token_id, pad_token_id) if x is not None}
        self.vocab_size = 256 + len(self.special_ids) + 3
        self.name_or_path = "UTF8ByteTokenizer"
        # transformers-style string attributes: no special *strings* exist, templates are plain bytes
        self.bos_token = self.eos_token = self.pad_token = None
        self.chat_template = None

    def __len__(self) -> int:
        return self.vocab_size

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        # one pass over the text (XTuner replaces one special at a time and can misalign when several occur)
        ids: list[int] = []
        for piece in self._split_re.split(text):
            if piece in self._special_to_id:
                ids.append(self._special_to_id[piece])
            elif piece:
                ids.extend(piece.encode("utf-8", errors="strict"))
        if add_special_tokens and self.bos_token_id is not None:
            ids = [self.bos_token_id] + ids
        if add_special_tokens and self.eos_token_id is not None:
            ids = ids + [self.eos_token_id]
        return ids

    def decode(self, ids, skip_special_tokens: bool = True, errors: str = "strict") -> str:
        """Bytes back to text; ids >= 256 are dropped. `errors="replace"` helps when decoding a partial generation."""
        if hasattr(ids, "tolist"):
            ids = ids.tolist()
        data = bytearray()
        for t in ids:
            if t < 0:
                raise ValueError(f"invalid token id: {t}")
            if t < 256:
                data.append(t)
        return bytes(data).decode("utf-8", errors=errors)

    def convert_tokens_to_ids(self, token: str) -> int | list[int]:
        ids = self.encode(token)
        return ids[0] if len(ids) == 1 else ids

    def save_pretrained(self, save_directory: str | Path, **kwargs) -> tuple:
        return ()  # nothing to save (XTuner does the same)

    def __call__(self, text: list[str] | str, return_tensors: Literal["np", "pt"] | None = "np", **kwargs):
        from transformers.tokenization_utils_base import BatchEncoding

        texts = [text] if isinstance(text, str) else list(text)
        batch = [self.encode(t, add_special_tokens=kwargs.get("add_special_tokens", False)) for t in texts]
        if return_tensors is None or len({len(ids) for ids in batch}) <= 1:
            return BatchEncoding({"input_ids": batch}, tensor_type=return_tensors)
        # ragged rows cannot stack: one int32 tensor/array per text, as XTuner returns them
        if return_tensors == "pt":
            import torch

            return BatchEncoding({"input_ids": [torch.tensor(ids, dtype=torch.int32) for ids in batch]})
        import numpy as np

        return BatchEncoding({"input_ids": [np.array(ids, dtype=np.int32) for ids in batch]})

    def __repr__(self) -> str:
        return f"UTF8ByteTokenizer(vocab_size={self.vocab_size}, bos={self.bos_token_id}, eos={self.eos_token_id}, " \
               f"pad={self.pad_token_id})"
