"""Evaluation during training: the eval loss (the training loss on held-out packs, without gradients) and greedy
generation checks scored against expected answers.

Eval loss: the same packs, masks, `loss_weights` and packed loss forward as a training step, with one step-wide
denominator: the sum of the weights over *every* eval pack of *every* rank (all-reduced), so the result is the
token mean over the whole eval set (with `loss_reduction="token"`), whatever the number of ranks. Rank r takes
packs r, r + world, ...; ranks with fewer packs run a zero-weight forward so that every rank calls the model the
same number of times (FSDP2 all-gathers parameters inside each forward).

Generation: each prompt is rendered with the chat template of the data (exactly the prefix the model sees before
an assistant answer in training) and decoded greedily with a KV cache. Under torchrun every rank decodes in
lockstep and takes rank 0's token each step (broadcast), so every rank runs the same number of forwards.

Nothing here may change training: model.eval() then the previous mode, torch.no_grad(), and the python/numpy/
torch (CPU and CUDA) RNG states are saved and restored around it. The training loader is never touched.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import random
import time
from pathlib import Path
from typing import Any, Iterator

import torch

from ..loss import global_denominator, loss_weights
from .distributed import DistInfo, all_reduce_sum
from .step import pack_inputs


def build_evaluator(cfg: Any, tokenizer: Any, dist: DistInfo, logger: logging.Logger) -> "Evaluator | None":
    """A run's evaluator, or None when neither `eval_dataloader_cfg` nor `eval_prompts` is set."""
    if cfg.eval_dataloader_cfg is None and not cfg.eval_prompts:
        return None
    with preserve_rng():  # building must not move the RNG that initialises the model
        return Evaluator(cfg, tokenizer, dist, logger)


class Evaluator:
    def __init__(self, cfg: Any, tokenizer: Any, dist: DistInfo, logger: logging.Logger):
        self.tokenizer, self.dist, self.loss_cfg = tokenizer, dist, _eval_loss_cfg(cfg)
        self.match, self.max_new_tokens = cfg.eval_match, cfg.eval_max_new_tokens
        self.loader = None
        if cfg.eval_dataloader_cfg is not None:
            dl_cfg = eval_dataloader_config(cfg.dataloader_cfg, cfg.eval_dataloader_cfg)
            pad = getattr(self.tokenizer, "pad_token_id", None)
            dl_cfg = dl_cfg.model_copy(update={"pad_token_id": pad if pad is not None else self.tokenizer.eos_token_id})
            # dp_size=1 on every rank: all ranks plan the same packs and split them themselves (see `loss`)
            self.loader = dl_cfg.build(self.tokenizer, dp_rank=0, dp_size=1, micro_batch_size=1, seed=cfg.seed)
            logger.info(f"eval data: {self.loader.stats.summary().splitlines()[0]}")
        template = _chat_template_name(cfg.eval_dataloader_cfg, cfg.dataset_cfg, cfg.dataloader_cfg)
        self.prompts = list(cfg.eval_prompts or [])
        self.prompt_ids = [render_prompt(self.tokenizer, template, p.prompt, p.system) for p in self.prompts]
        self.stop_seqs = stop_sequences(self.tokenizer, template)

    # ---- one evaluation ----------------------------------------------------------------------------------------
    def run(self, model: torch.nn.Module, autocast_dtype: torch.dtype | None) -> dict[str, Any]:
        """The eval metrics of the model as it is now (same values on every rank)."""
        t0 = time.time()
        out: dict[str, Any] = {}
        was_training = model.training
        model.eval()
        try:
            with preserve_rng(), torch.no_grad():
                if self.loader is not None:
                    out.update(self.loss(model, autocast_dtype))
                if self.prompts:
                    out.update(self.generations(model, autocast_dtype))
        finally:
            model.train(was_training)
        out["eval/time"] = time.time() - t0
        return out

    def loss(self, model: torch.nn.Module, autocast_dtype: torch.dtype | None) -> dict[str, Any]:
        device, rank, world = self.dist.device, self.dist.rank, self.dist.world_size
        mine = list(range(rank, self.loader.num_packs, world))
        rounds = math.ceil(self.loader.num_packs / world)  # forwards per rank, equal on every rank
        cfg = self.loss_cfg

        def weights(pack: dict) -> torch.Tensor:
            return loss_weights(pack["shifted_labels"], pack["cu_seq_lens"], cfg.loss_reduction,
                                cfg.ignore_idx).to(device)

        # pass 1: the denominator over all eval packs of all ranks (packs are collated twice, never all held)
        pack_weights, tokens = [], torch.zeros((), dtype=torch.float64, device=device)
        for p in mine:
            pack = self.loader.collate([p])[0]
            pack_weights.append(weights(pack))
            tokens += int((pack["shifted_labels"] != cfg.ignore_idx).sum())
        denom_t = global_denominator(pack_weights, device)[1].float()
        tokens = all_reduce_sum(tokens).item()
        # pass 2: sum_i(CE_i * w_i) / denom per pack, summed over packs and ranks = the step-style loss
        total = torch.zeros((), dtype=torch.float64, device=device)
        for k in range(rounds):
            pack = self.loader.collate([mine[k] if k < len(mine) else 0])[0]
            w = weights(pack) if k < len(mine) else torch.zeros(pack["shifted_labels"].numel(), device=device)
            with torch.autocast(device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
                loss = model(**pack_inputs(pack, device), shifted_labels=pack["shifted_labels"].to(device),
                             loss_weights=w, loss_denominator=denom_t, loss_cfg=cfg)
            total += loss.detach().double()
        return {"eval/loss": float(all_reduce_sum(total)), "eval/loss_tokens": int(tokens),
                "eval/packs": self.loader.num_packs}

    def generations(self, model: torch.nn.Module, autocast_dtype: torch.dtype | None) -> dict[str, Any]:
        rows, scored, correct = [], 0, 0
        for spec, ids in zip(self.prompts, self.prompt_ids):
            new = greedy_decode(model, ids, self.max_new_tokens, self.stop_seqs, self.dist.device, autocast_dtype)
            answer = self.tokenizer.decode(_strip_stop(new, self.stop_seqs), skip_special_tokens=True).strip()
            ok = score(answer, spec.expected, self.match)
            if ok is not None:
                scored, correct = scored + 1, correct + int(ok)
            rows.append({"prompt": spec.prompt, "answer": answer, "expected": spec.expected, "correct": ok})
        out: dict[str, Any] = {"eval/generations": rows}
        if scored:
            out.update({"eval/accuracy": correct / scored, "eval/correct": correct, "eval/scored": scored})
        return out


# ---- pieces, usable on their own -------------------------------------------------------------------------------
def eval_dataloader_config(train_cfg, eval_cfg):
    """`eval_cfg` with every field left at its default taken from the training `train_cfg` (packing,
    pack_max_length, collator, ...): an eval config can be just `DataloaderConfig(dataset_config_list=[...])`.
    (Defaults, not "unset" fields: a config saved to JSON and loaded again must give the same eval data.)"""
    if not eval_cfg.dataset_config_list:
        raise ValueError("eval_dataloader_cfg.dataset_config_list is empty: give the held-out data, e.g. "
                         '[{"dataset": DatasetConfig(anno_path=demo_data_path("eval")), "tokenize_fn": ...}]')
    return train_cfg.model_copy(update=eval_cfg.changed_fields())


def score(answer: str, expected: str | None, match: str) -> bool | None:
    """exact: equal after stripping surrounding whitespace; contains: `expected` occurs in the answer.
    None when there is nothing to compare with."""
    if expected is None:
        return None
    if match == "exact":
        return answer.strip() == expected.strip()
    if match == "contains":
        return expected.strip() in answer
    raise ValueError(f"eval_match must be 'exact' or 'contains', got {match!r}")


def render_prompt(tokenizer, template: str | None, prompt: str, system: str | None = None) -> list[int]:
    """Token ids of a one-turn conversation up to where the assistant answer starts.

    A named template ('qwen3', ...): its user segment already ends with the assistant header, and segments are
    encoded one by one exactly as the training data was. 'hf': the tokenizer's own chat template with the
    generation prompt. None (pretraining data): the raw prompt text.
    """
    from ..datasets.messages import Conversation, Message
    from ..datasets.chat_template_jinja import HF_TEMPLATE
    from ..datasets.chat_template_named import CHAT_TEMPLATE_MAP
    from ..datasets.tokenize_fn import encode_texts

    if template is None:
        return encode_texts(tokenizer, [prompt])[0]
    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": prompt}]
    if template == HF_TEMPLATE:
        text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return encode_texts(tokenizer, [text])[0]
    conv = Conversation([Message(m["role"], m["content"], False) for m in messages])
    segments = CHAT_TEMPLATE_MAP[template].render(conv)
    return [t for ids in encode_texts(tokenizer, [s for s, _ in segments]) for t in ids]


def stop_sequences(tokenizer, template: str | None) -> list[list[int]]:
    """Token sequences that end an answer: the tokenizer's EOS and the template's stop words."""
    from ..datasets.chat_template_named import CHAT_TEMPLATE_MAP
    from ..datasets.tokenize_fn import encode_texts

    seqs: list[list[int]] = []
    eos = getattr(tokenizer, "eos_token_id", None)
    if isinstance(eos, int):
        seqs.append([eos])
    words = CHAT_TEMPLATE_MAP[template].stop_words if template in CHAT_TEMPLATE_MAP else []
    for ids in encode_texts(tokenizer, list(words)) if words else []:
        if ids and ids not in seqs:
            seqs.append(ids)
    return seqs


def greedy_decode(model: torch.nn.Module, prompt_ids: list[int], max_new_tokens: int, stop_seqs: list[list[int]],
                  device: torch.device, autocast_dtype: torch.dtype | None = None) -> list[int]:
    """New token ids (the stop sequence included when one ended the answer). Under torchrun every rank must call
    this with the same prompt: each step uses rank 0's token, so all ranks run the same forwards."""
    import torch.distributed as dist

    distributed = dist.is_available() and dist.is_initialized()
    ids = torch.tensor([prompt_ids], dtype=torch.long, device=device)
    new: list[int] = []
    # transformers 5.21+ names the KV cache `cache` (`past_key_values` is deprecated there); 4.x only knows
    # `past_key_values`. The first forward's output says which this transformers has.
    cache, cache_name = None, None
    for _ in range(max_new_tokens):
        with torch.autocast(device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
            out = model(input_ids=ids, use_cache=True, logits_to_keep=1, **({cache_name: cache} if cache_name else {}))
        cache_name = cache_name or ("cache" if getattr(out, "cache", None) is not None else "past_key_values")
        cache = getattr(out, cache_name)
        nxt = out.logits[0, -1].argmax().reshape(1, 1)
        if distributed:
            dist.broadcast(nxt, src=0)
        new.append(int(nxt))
        if any(len(new) >= len(s) and new[-len(s):] == s for s in stop_seqs):
            break
        ids = nxt
    return new


def prompts_from_jsonl(path: str | Path, limit: int | None = None) -> list[tuple[str, str]]:
    """(last user message, last assistant message) of the first `limit` conversations of an OpenAI-messages jsonl:
    generation checks from held-out data, e.g. `eval_prompts=prompts_from_jsonl(demo_data_path("eval"), 4)`."""
    out: list[tuple[str, str]] = []
    for no, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        if limit is not None and len(out) >= limit:
            break
        try:
            msgs = json.loads(line)["messages"]
            user = [m["content"] for m in msgs if m["role"] == "user"][-1]
            answer = [m["content"] for m in msgs if m["role"] == "assistant"][-1]
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            raise ValueError(f"{path}:{no}: need 'messages' with a user and an assistant message ({exc!r})") from None
        out.append((user, answer))
    return out


@contextlib.contextmanager
def preserve_rng() -> Iterator[None]:
    """Restore python, numpy and torch (CPU and CUDA) RNG states on exit, so evaluation consumes none of them."""
    py = random.getstate()
    try:
        import numpy as np

        npy = np.random.get_state()
    except ImportError:
        np, npy = None, None
    cpu = torch.get_rng_state()
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() and torch.cuda.is_initialized() else None
    try:
        yield
    finally:
        random.setstate(py)
        if np is not None:
            np.random.set_state(npy)
        torch.set_rng_state(cpu)
        if cuda is not None:
            torch.cuda.set_rng_state_all(cuda)


def _chat_template_name(eval_dl, train_list, train_dl) -> str | None:
    """The chat template of the (eval, else training) data's first tokenize function; None for pretraining data."""
    for entries in (eval_dl.dataset_config_list if eval_dl else None, train_list, train_dl.dataset_config_list):
        if entries:
            fn = entries[0].get("tokenize_fn") if isinstance(entries[0], dict) else None
            return getattr(fn, "chat_template", None)
    return None


def _strip_stop(new: list[int], stop_seqs: list[list[int]]) -> list[int]:
    for s in stop_seqs:
        if len(new) >= len(s) and new[-len(s):] == s:
            return new[:-len(s)]
    return new


def _eval_loss_cfg(cfg):
    """The eval loss is cross-entropy: the run's CELossConfig, or a default one when training uses a custom loss."""
    from ..loss import CELossConfig

    loss_cfg = cfg.effective_loss_cfg()
    return loss_cfg if type(loss_cfg) is CELossConfig else CELossConfig(ignore_idx=loss_cfg.ignore_idx)
