"""The end of an assistant turn: which text closes it in a tokenize function's rendering, and whether a sample
trains it. A model learns to stop only from trained end-of-turn tokens; the pre-flight counts the samples that
train none after their last trained turn."""

from __future__ import annotations

import numpy as np

from .chat_template_export import end_of_turn_text
from .chat_template_jinja import HF_TEMPLATE, _markers
from .chat_template_named import CHAT_TEMPLATE_MAP
from .tokenize_fn import IGNORE_INDEX, encode_texts


def end_of_turn_for(fn_cfg, tokenizer) -> str | None:
    """The text that closes an assistant turn in this tokenize function's rendering (None: no chat turns)."""
    template = getattr(fn_cfg, "chat_template", None)
    if template in CHAT_TEMPLATE_MAP:
        return end_of_turn_text(CHAT_TEMPLATE_MAP[template])
    if template == HF_TEMPLATE:
        return _markers(tokenizer)[1] or None
    if not getattr(fn_cfg.build(tokenizer), "reads_messages", False):
        return None  # pretraining text: no turns
    eos = getattr(tokenizer, "eos_token", None)
    return eos if isinstance(eos, str) and eos else None


def trains_end_of_turn(tf, eot: str, tokenizer) -> np.ndarray:
    """Per sample: the last trained token ends with the end-of-turn token(s), trained too. When the end of turn is
    several tokens (not a special token of this tokenizer), the decoded tail is compared as text, since the whole
    conversation may have been encoded at once and merged it with what follows."""
    eot_ids = encode_texts(tokenizer, [eot])[0]
    mask = tf.labels != IGNORE_INDEX
    starts, ends = tf.offsets[:-1], tf.offsets[1:]
    pos = np.where(mask, np.arange(len(mask)), -1)
    last = np.full(len(starts), -1, np.int64)
    nonempty = np.nonzero(ends > starts)[0]
    if len(nonempty):
        last[nonempty] = np.maximum.reduceat(pos, starts[nonempty])
    ok = last >= 0
    for j, tok in enumerate(reversed(eot_ids)):  # the k-th token from the end of the trained run
        at = last - j
        inside = ok & (at >= starts)
        ok = inside & (tf.input_ids[np.clip(at, 0, None)] == tok) & mask[np.clip(at, 0, None)]
    if len(eot_ids) > 1:
        for i in np.nonzero(~ok & (last >= 0))[0]:
            tail = tokenizer.decode(tf.input_ids[max(int(starts[i]), int(last[i]) - 16):int(last[i]) + 1].tolist())
            ok[i] = tail.rstrip().endswith(eot)
    return ok
