"""The real-model mode of `throughput.py`: a pretrained checkpoint from `xtuner_nb.model.fetch_pretrained` instead of
a random Qwen3, trained in full and with LoRA.

The systems start from the same folder: the pretrained weights and config (symlinked from the cache, nothing
copied) with the model's own tokenizer, whose chat template is ChatML with `{% generation %}` marks around the
assistant turns, so TRL (`assistant_only_loss=True`) and ours (`chat_template="hf"`) train the same tokens.
SmolLM2's own template is ChatML too; it only adds a default system prompt, which the benchmark leaves out.
"""

from __future__ import annotations

from pathlib import Path

REAL_MODELS = {"smollm2-135m-instruct": "SmolLM2-135M-Instruct (pretrained, Llama architecture)"}


def prepare_init(name: str, init: Path):
    """Fill `init` from the pretrained model `name`; returns its tokenizer (the benchmark's chat template)."""
    from transformers import AutoTokenizer

    from xtuner_nb.model import fetch_pretrained
    from xtuner_nb.model.tokenizer import CHAT_TEMPLATE

    if name not in REAL_MODELS:
        raise SystemExit(f"--model {name!r}: choose one of {sorted(REAL_MODELS)}")
    src = Path(fetch_pretrained(name)).resolve()
    init.mkdir(parents=True, exist_ok=True)
    for f in src.iterdir():
        if f.suffix in (".safetensors",) or f.name in ("config.json", "generation_config.json") or \
                f.name.endswith(".safetensors.index.json"):
            (init / f.name).symlink_to(f)
    tok = AutoTokenizer.from_pretrained(str(src))
    tok.chat_template = CHAT_TEMPLATE
    tok.save_pretrained(str(init))
    return tok


def model_config(init: Path):
    """Our config of the checkpoint in `init` (the class follows config.json's model_type)."""
    from xtuner_nb.model import model_config_from_hf

    return model_config_from_hf(init)


def lora_configs(r: int):
    """(ours, TRL's) LoRA configs: rank r, alpha 2r, no dropout, every linear layer of every decoder layer."""
    from xtuner_nb.model import LoRAConfig

    ours = LoRAConfig(r=r, lora_alpha=2 * r, lora_dropout=0.0)
    theirs = ours.to_peft()
    theirs.task_type = "CAUSAL_LM"
    return ours, theirs
