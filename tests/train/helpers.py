"""Builders shared by the trainer tests: one small, fast, deterministic run on the demo data."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def small_config(tiny_ckpt: Path, work_dir: Path, **over: Any):
    from xtuner_nb.config import AdamWConfig, FSDPConfig, LRConfig
    from xtuner_nb.datasets import DataloaderConfig, DatasetConfig, OpenaiTokenizeFunctionConfig
    from xtuner_nb.datasets.demo import demo_data_path
    from xtuner_nb.model import model_config_from_hf
    from xtuner_nb.train import TrainerConfig

    dl = over.pop("dataloader_cfg", None) or DataloaderConfig(
        dataset_config_list=[{"dataset": DatasetConfig(anno_path=demo_data_path("train")),
                              "tokenize_fn": OpenaiTokenizeFunctionConfig(chat_template="qwen3", max_length=256)}],
        pack_max_length=256, group_by_length=over.pop("group_by_length", True))
    fields = dict(model_cfg=model_config_from_hf(tiny_ckpt), load_from=tiny_ckpt, tokenizer_path=tiny_ckpt,
                  dataloader_cfg=dl, optim_cfg=AdamWConfig(lr=1e-3), lr_cfg=LRConfig(lr_type="cosine", warmup_ratio=0),
                  fsdp_cfg=FSDPConfig(recompute_ratio=0.0), total_step=4, work_dir=work_dir, device="cpu")
    fields.update(over)
    return TrainerConfig(**fields)


def losses(trainer) -> list[float]:
    return list(trainer.history["loss/reduced_llm_loss"])


def reference_token_mean(hf_path, packs) -> float:
    """Token-mean CE of transformers' own model (sdpa, fp32) run on each packed sample alone: what step 1 must give."""
    import torch
    from transformers import AutoModelForCausalLM

    ref = AutoModelForCausalLM.from_pretrained(hf_path, attn_implementation="sdpa", dtype=torch.float32).eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for p in packs:
            cu = p["cu_seq_lens"].tolist()
            for a, b in zip(cu[:-1], cu[1:]):
                ids, labels = p["input_ids"][:, a:b], p["shifted_labels"][0, a:b]
                if (labels != -100).sum() == 0:
                    continue
                logits = ref(input_ids=ids).logits[0].float()
                ce = torch.nn.functional.cross_entropy(logits, labels, ignore_index=-100, reduction="sum")
                total, count = total + ce.item(), count + int((labels != -100).sum())
    return total / count
