"""Shared parts of the training benchmarks (`throughput.py` on CPU, `gpu_check.py` on a lent GPU).

Everything is made locally, nothing comes from a hub:
- a byte-level BPE tokenizer trained on a synthetic corpus (Zipf-distributed pseudo-words, so BPE reaches a real
  32k vocabulary and most words become one token);
- SFT data as OpenAI-messages jsonl, lengths drawn from a log-normal and clipped to [min_len, max_len] tokens
  *after* the chat template, 1-2 turns, sometimes a system prompt;
- one random-init Qwen3 checkpoint (fp32 safetensors) that every system loads, so all start from the same weights.

Each system trains in its own process (`run_ours`, `run_trl`) and times the same thing: wall time from the end of
the first optimizer step to the end of the last one, over the non-padding tokens of those steps. The first step
(lazy allocation, optimizer state creation) is the warm-up and is not timed.
"""

from __future__ import annotations

import json
import math
import random
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

GiB = 2**30
_CONS, _VOWELS = "bcdfghjklmnprstvwz", "aeiou"


# ---- synthetic corpus, tokenizer, data ----------------------------------------------------------------------------
def _lexicon(seed: int = 0, n_words: int = 60000) -> tuple[list[str], list[float]]:
    """Pseudo-words (1-4 syllables) and Zipf(1) cumulative weights."""
    rnd = random.Random(seed)
    syllables = sorted({c + v + (e if rnd.random() < 0.3 else "") for c in _CONS for v in _VOWELS for e in "nrs"})
    words = sorted({"".join(rnd.choice(syllables) for _ in range(rnd.choice((1, 2, 2, 3, 3, 4))))
                    for _ in range(n_words)})
    rnd.shuffle(words)
    cum, acc = [], 0.0
    for i in range(len(words)):
        acc += 1.0 / (i + 1)
        cum.append(acc)
    return words, cum


class TextSource:
    def __init__(self, seed: int = 0):
        self.words, self.cum = _lexicon(seed)
        self.rnd = random.Random(seed + 1)

    def text(self, n_words: int) -> str:
        return " ".join(self.rnd.choices(self.words, cum_weights=self.cum, k=max(1, n_words)))


def make_tokenizer(path: Path, vocab_size: int = 32000, seed: int = 0, corpus_words: int = 900_000):
    """A byte-level BPE with Qwen's chat specials whose len() is at most `vocab_size` (the model's vocab)."""
    from xtuner_nb.model import make_tiny_tokenizer
    from xtuner_nb.model.tokenizer import ADDED_TOKENS

    src = TextSource(seed)
    corpus = [src.text(300) for _ in range(corpus_words // 300)]
    # the tokenizer adds <|im_start|> as an extra special and the ADDED_TOKENS after training
    tok = make_tiny_tokenizer(path, corpus, vocab_size=vocab_size - len(ADDED_TOKENS) - 1)
    if len(tok) > vocab_size:
        raise RuntimeError(f"tokenizer has {len(tok)} tokens, more than the model's {vocab_size}")
    return tok


def chat_ids(tokenizer, messages: list[dict]) -> tuple[list[int], list[int]]:
    """Token ids and assistant mask (1 = trained) exactly as TRL and chat_template='hf' see the conversation."""
    out = tokenizer.apply_chat_template(messages, tokenize=True, return_dict=True, return_assistant_tokens_mask=True)
    return list(out["input_ids"]), list(out["assistant_masks"])


def target_lengths(n: int, seed: int, min_len: int = 50, max_len: int = 2000, median: float = 320.0,
                   sigma: float = 0.9) -> list[int]:
    """`n` lengths from a log-normal clipped to [min_len, max_len], stratified (one per quantile bin, shuffled)
    so that even a few dozen samples cover the short head and the long tail of SFT data."""
    from statistics import NormalDist

    rnd = random.Random(seed)
    z = NormalDist()
    out = [int(min(max_len, max(min_len, median * math.exp(sigma * z.inv_cdf((i + rnd.random()) / n)))))
           for i in range(n)]
    rnd.shuffle(out)
    return out


def make_sft_jsonl(path: Path, tokenizer, n: int, seed: int, min_len: int = 50, max_len: int = 2000,
                   median: float = 320.0, sigma: float = 0.9) -> list[int]:
    """`n` conversations whose templated token counts follow `target_lengths`; returns the token counts."""
    src = TextSource(seed + 100)
    rnd = random.Random(seed)
    per_word = len(tokenizer(src.text(2000)).input_ids) / 2000  # tokens per word, for the first guess
    lengths = []
    with open(path, "w", encoding="utf-8") as f:
        for target in target_lengths(n, seed, min_len, max_len, median, sigma):
            msgs: list[dict[str, str]] = []
            if rnd.random() < 0.3:
                msgs.append({"role": "system", "content": src.text(rnd.randint(5, 20))})
            turns = 2 if rnd.random() < 0.3 and target > 200 else 1
            budget = max(4, target - 6 * turns - 3 * len(msgs)) / per_word  # words, minus the template tokens
            for _t in range(turns):
                share = budget / turns
                user = max(2, int(share * rnd.uniform(0.1, 0.5)))
                msgs += [{"role": "user", "content": src.text(user)},
                         {"role": "assistant", "content": src.text(max(2, int(share) - user))}]
            msgs = _fit_length(tokenizer, msgs, src, min_len, max_len)
            lengths.append(len(chat_ids(tokenizer, msgs)[0]))
            f.write(json.dumps({"messages": msgs}, ensure_ascii=False) + "\n")
    return lengths


def _fit_length(tokenizer, msgs: list[dict], src: TextSource, min_len: int, max_len: int) -> list[dict]:
    """Trim or extend the last assistant turn until the templated length lies in [min_len, max_len]."""
    for _ in range(50):
        n = len(chat_ids(tokenizer, msgs)[0])
        words = msgs[-1]["content"].split(" ")
        if n > max_len:
            msgs[-1]["content"] = " ".join(words[: max(1, len(words) - (n - max_len) - 1)])
        elif n < min_len:
            msgs[-1]["content"] += " " + src.text(min_len - n + 1)
        else:
            return msgs
    raise RuntimeError("could not fit a sample into the length range")


def read_jsonl(path: Path) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


# ---- model --------------------------------------------------------------------------------------------------------
def model_config(hidden: int, layers: int, vocab: int, intermediate: int | None = None, heads: int | None = None,
                 kv_heads: int | None = None, head_dim: int = 64, tie: bool = False, max_pos: int = 32768,
                 attn_impl: str = "varlen"):
    """A Qwen3-shaped config (GQA, q/k norms, SwiGLU); the token ids of the local tokenizer."""
    from xtuner_nb.model import MHAConfig, Qwen3DenseConfig

    heads = heads or max(1, hidden // head_dim)
    return Qwen3DenseConfig(
        vocab_size=vocab, hidden_size=hidden, intermediate_size=intermediate or 3 * hidden, num_hidden_layers=layers,
        bos_token_id=0, eos_token_id=2, pad_token_id=0, max_position_embeddings=max_pos, tie_word_embeddings=tie,
        attention=MHAConfig(num_attention_heads=heads, num_key_value_heads=kv_heads or max(1, heads // 2),
                            head_dim=head_dim, attn_impl=attn_impl))


def save_init_checkpoint(path: Path, model_cfg, tokenizer, seed: int = 0) -> None:
    """One random init, saved in fp32 so every system starts from bit-identical weights."""
    import torch

    from xtuner_nb.model import save_hf

    torch.manual_seed(seed)
    model = model_cfg.build(device="cpu", dtype=torch.float32)
    save_hf(model, model_cfg, path, tokenizer=tokenizer, dtype=torch.float32)
    del model


# ---- measuring ----------------------------------------------------------------------------------------------------
def peak_rss_gib() -> float:
    """Peak resident memory of this process: the Trainer's own figure (VmHWM), not inflated by the driver that
    started it as ru_maxrss would be."""
    from xtuner_nb.train.metrics import peak_rss_kib

    return peak_rss_kib() / 2**20


class StepLog:
    """At the end of every optimizer step: wall clock, process CPU time, and the tokens the model saw in it.

    Tokens are counted by a forward pre-hook on the model (`attach`), the same code for every system: the real
    (non-padding) tokens and the sum of squared sample lengths (for the attention term of the FLOPs).
    """

    def __init__(self, pad_id: int | None = None):
        self.pad_id = pad_id
        self.ends: list[float] = []
        self.cpu: list[float] = []
        self.tokens: list[int] = []
        self.sq: list[int] = []
        self.losses: list[float] = []
        self.peaks: list[float] = []
        self.rss: list[float] = []
        self._tokens = self._sq = 0

    def attach(self, model) -> None:
        model.register_forward_pre_hook(self._count, with_kwargs=True)

    def _count(self, module, args, kwargs) -> None:
        import torch

        ids = kwargs.get("input_ids", args[0] if args else None)
        if kwargs.get("cu_seq_lens_q") is not None:  # a pack (ours, TRL padding-free)
            cu = kwargs["cu_seq_lens_q"].tolist()
            lens = [b - a for a, b in zip(cu[:-1], cu[1:])]
            flat = ids.reshape(-1)
            # our collator pads a pack with pseudo-segments of at most 256 pad tokens at its end: drop them all
            pad = self.pad_id
            while pad is not None and len(lens) > 1 and bool((flat[cu[len(lens) - 1]:] == pad).all()):
                lens.pop()
        elif kwargs.get("attention_mask") is not None:  # a padded batch, one sample per row
            lens = kwargs["attention_mask"].sum(-1).tolist()
        else:
            lens = [ids.shape[-1]] * ids.shape[0]
        self._tokens += int(sum(lens))
        self._sq += int(sum(x * x for x in lens))

    def step_end(self, loss: float | None = None, peak_gib: float | None = None) -> None:
        self.ends.append(time.perf_counter())
        self.cpu.append(time.process_time())
        self.tokens.append(self._tokens)
        self.sq.append(self._sq)
        self.rss.append(peak_rss_gib())
        self._tokens = self._sq = 0
        if loss is not None:
            self.losses.append(float(loss))
        if peak_gib is not None:
            self.peaks.append(peak_gib)

    def summary(self, warmup: int = 1, model_cfg=None, peak_flops: float | None = None) -> dict[str, Any]:
        if len(self.ends) <= warmup:
            raise RuntimeError(f"only {len(self.ends)} steps ran; need more than the {warmup} warm-up step(s)")
        seconds = self.ends[-1] - self.ends[warmup - 1]
        cpu_seconds = self.cpu[-1] - self.cpu[warmup - 1]
        tokens, sq = sum(self.tokens[warmup:]), sum(self.sq[warmup:])
        out = {"steps": len(self.ends), "timed_steps": len(self.ends) - warmup, "timed_seconds": seconds,
               "timed_tokens": tokens, "total_tokens": sum(self.tokens), "tokens_per_s": tokens / seconds,
               "tokens_per_cpu_s": tokens / cpu_seconds if cpu_seconds > 0 else None,
               "attn_len": sq / tokens if tokens else 0.0,
               "final_loss": self.losses[-1] if self.losses else None,
               "max_memory_gb": max(self.peaks) if self.peaks else None,
               # the process's peak RSS up to the end of the last step (not what runs after training)
               "peak_rss_gib": self.rss[-1]}
        if model_cfg is not None:
            from xtuner_nb.train.flops import flops_per_token

            flops = flops_per_token(model_cfg, 0.0) * tokens + (flops_per_token(model_cfg, 1.0)
                                                               - flops_per_token(model_cfg, 0.0)) * sq
            out["model_tflops_per_s"] = flops / seconds / 1e12
            out["mfu"] = flops / seconds / peak_flops if peak_flops else None
        return out


def _cuda_step_peak_gib(device: str) -> float | None:
    """Peak allocated GPU memory since the last call (then reset), as the Trainer measures each step."""
    if device != "cuda":
        return None
    import torch

    peak = torch.cuda.max_memory_allocated() / GiB
    torch.cuda.reset_peak_memory_stats()
    return peak


def eval_loss(model, samples: list[tuple[list[int], list[int]]], device: str = "cpu") -> float:
    """Token-mean CE over the assistant tokens of held-out conversations, one sample per forward (no padding).

    The same function for every system, so the losses compare; runs after training, outside the timing.
    """
    import torch
    import torch.nn.functional as F

    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for ids, mask in samples:
            x = torch.tensor([ids], device=device)
            logits = model(input_ids=x, use_cache=False).logits[0, :-1].float()
            labels = torch.tensor(ids[1:], device=device)
            keep = torch.tensor(mask[1:], device=device).bool()
            ce = F.cross_entropy(logits, labels, reduction="none")
            total += float(ce[keep].sum())
            count += int(keep.sum())
    model.train(was_training)
    return total / max(count, 1)


# ---- the systems --------------------------------------------------------------------------------------------------
def run_ours(init: Path | None, train_jsonl: Path, model_cfg, *, pack_len: int, lr: float, work_dir: Path,
             tokenizer_path: Path | None = None, device: str = "cpu", recompute_ratio: float = 0.0,
             total_step: int | None = None, warmup: int = 1, lora_cfg=None,
             precision: str = "auto") -> dict[str, Any]:
    """xtuner_nb's Trainer: soft packing to `pack_len`, varlen attention, chunked CE, one pack per step.

    `init`: the HF folder to start from (None: the Trainer's own random init). On CUDA the Trainer trains fp32
    master weights under bf16 autocast; `max_memory_gb` is the largest per-step `torch.cuda.max_memory_allocated`.
    `lora_cfg`: an `xtuner_nb.model.LoRAConfig` to train adapters only.
    """
    from xtuner_nb.config import AdamWConfig, FSDPConfig, LRConfig
    from xtuner_nb.datasets import DataloaderConfig, DatasetConfig, OpenaiTokenizeFunctionConfig
    from xtuner_nb.loss import CELossConfig
    from xtuner_nb.train.hooks.events import Hook
    from xtuner_nb.train.trainer import Trainer

    from transformers import AutoTokenizer

    from xtuner_nb.train.flops import device_peak_flops

    tok = AutoTokenizer.from_pretrained(str(tokenizer_path or init))
    log, rows = StepLog(pad_id=tok.pad_token_id), []

    class Timer(Hook):
        def on_step_end(self, state, metrics, control):
            # the Trainer resets the CUDA peak at the start of each step and reports it in the row
            log.step_end(metrics["loss/reduced_llm_loss"],
                         metrics["memory/max_memory_GB"] if device == "cuda" else None)
            rows.append(metrics)

    t0 = time.perf_counter()
    trainer = Trainer(
        model_cfg=model_cfg, load_from=init, tokenizer_path=tokenizer_path or init, hooks=[Timer()],
        show_dashboard=False,
        dataloader_cfg=DataloaderConfig(
            dataset_config_list=[{"dataset": DatasetConfig(anno_path=str(train_jsonl)),
                                  "tokenize_fn": OpenaiTokenizeFunctionConfig(chat_template="hf",
                                                                              max_length=pack_len)}],
            pack_max_length=pack_len),
        optim_cfg=AdamWConfig(lr=lr, betas=(0.9, 0.95), weight_decay=0.01, max_grad_norm=1.0),
        lr_cfg=LRConfig(lr_type="constant", warmup_ratio=0), loss_cfg=CELossConfig(mode="chunk"),
        fsdp_cfg=FSDPConfig(recompute_ratio=recompute_ratio, precision=precision), global_batch_size=1,
        lora_cfg=lora_cfg,
        total_step=total_step, total_epoch=None if total_step else 1, work_dir=work_dir,
        debug_skip_save=True, device=device, seed=42)
    build_s = time.perf_counter() - t0
    log.attach(trainer.model)
    rss_before = peak_rss_gib()
    trainer.fit()
    # a GPU's datasheet peak in bf16; a CPU's measured peak in the dtype this run computes in (train/cpu_peak.py)
    torch = __import__("torch")
    peak = device_peak_flops(device, torch.bfloat16 if device == "cuda" or precision == "bfloat16" else torch.float32)
    out = log.summary(warmup, model_cfg, peak)
    out.update(rss_before_train_gib=rss_before, build_seconds=build_s,
               trainer_mfu=_median([r["runtime_info/mfu"] for r in rows[warmup:]
                                    if r.get("runtime_info/mfu") is not None]),
               trainer_tgs=_median([r["runtime_info/tgs"] for r in rows[warmup:]]))
    out.update(precision=trainer.precision.describe(), attention_backend=getattr(trainer, "attention_backend", None),
               fit_estimate_gib=trainer.memory_estimate.total / 2**30,
               loss_scale=trainer.grad_scaler.get_scale() if trainer.grad_scaler is not None else None)
    out["model"] = trainer.model
    out["trainer"] = trainer
    return out


def run_trl(init: Path | None, train_jsonl: Path, *, mode: str, pack_len: int, batch_size: int, lr: float,
            out_dir: Path, model_cfg=None, tokenizer_path: Path | None = None, device: str = "cpu",
            gradient_checkpointing: bool = False, bf16: bool = False, attn_implementation: str = "sdpa",
            max_steps: int | None = None, max_length: int | None = None, warmup: int = 1,
            peft_config=None) -> dict[str, Any]:
    """TRL SFTTrainer. mode='padding': its default collator (pad to the longest in the batch);
    mode='packing': packing=True with the default bfd strategy, which turns padding-free on.

    `init`: the HF folder to start from; None: a random init of `model_cfg` (its transformers config).
    `peft_config`: a `peft.LoraConfig`, handed to SFTTrainer (which wraps the model in peft itself).
    """
    import dataclasses

    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import SFTConfig, SFTTrainer

    from xtuner_nb.train.flops import device_peak_flops

    if mode not in ("padding", "packing"):
        raise ValueError(f"mode must be 'padding' or 'packing', got {mode!r}")
    tok = AutoTokenizer.from_pretrained(str(tokenizer_path or init))
    if init is not None:
        model = AutoModelForCausalLM.from_pretrained(str(init), dtype=torch.float32,
                                                     attn_implementation=attn_implementation)
    else:
        hf = model_cfg.hf_config
        with torch.device("cuda" if device == "cuda" else "cpu"):  # random init where it will train (faster)
            model = AutoModelForCausalLM.from_config(hf, dtype=torch.float32, attn_implementation=attn_implementation)
    log, seen_loss = StepLog(pad_id=tok.pad_token_id), {}

    class Timer(TrainerCallback):
        def on_step_begin(self, args, state, control, **kw):
            _cuda_step_peak_gib(device)  # reset, as the Trainer does at the start of each step

        def on_step_end(self, args, state, control, **kw):
            log.step_end(None, _cuda_step_peak_gib(device))

        def on_log(self, args, state, control, logs=None, **kw):
            if logs and "loss" in logs:
                seen_loss["last"] = logs["loss"]

    fields = {f.name for f in dataclasses.fields(SFTConfig)}
    ckpt_field = "activation_checkpointing" if "activation_checkpointing" in fields else "gradient_checkpointing"
    args = SFTConfig(
        output_dir=str(out_dir), per_device_train_batch_size=batch_size, gradient_accumulation_steps=1,
        num_train_epochs=1, max_steps=max_steps or -1, learning_rate=lr, lr_scheduler_type="constant",
        warmup_steps=0, weight_decay=0.01, adam_beta1=0.9, adam_beta2=0.95, adam_epsilon=1e-8, max_grad_norm=1.0,
        bf16=bf16, fp16=False, use_cpu=device == "cpu", **{ckpt_field: gradient_checkpointing},
        logging_steps=1, save_strategy="no", eval_strategy="no", report_to=[], disable_tqdm=True,
        dataloader_num_workers=0, seed=42, max_length=max_length or pack_len,
        packing=mode == "packing", assistant_only_loss=True)
    records = read_jsonl(train_jsonl)
    t0 = time.perf_counter()
    trainer = SFTTrainer(model=model, args=args, train_dataset=Dataset.from_list(records), processing_class=tok,
                         callbacks=[Timer()], peft_config=peft_config)
    build_s = time.perf_counter() - t0
    # the outermost module TRL calls (a peft wrapper reaches the base model's forward without its hooks)
    log.attach(trainer.model)
    rss_before = peak_rss_gib()
    trainer.train()
    peak = device_peak_flops(device, torch.bfloat16 if bf16 else torch.float32) if device == "cpu" or bf16 else None
    out = log.summary(warmup, model_cfg, peak)
    out["final_loss"] = float(seen_loss["last"]) if "last" in seen_loss else None
    out.update(rss_before_train_gib=rss_before, build_seconds=build_s,
               padding_free=bool(getattr(trainer, "padding_free", False)))
    out["model"] = trainer.model
    out["trainer"] = trainer
    return out


def _median(values: list[float]) -> float | None:
    if not values:
        return None
    s = sorted(values)
    mid = len(s) // 2
    return s[mid] if len(s) % 2 else (s[mid - 1] + s[mid]) / 2


def median(values: list[float]) -> float | None:
    return _median([v for v in values if v is not None])
