"""Chat preview with a tiny random Qwen3 (transformers' own module) and the tiny BPE tokenizer."""

import pytest
import torch

from xtuner_nb.model import Qwen3DenseTinyConfig
from xtuner_nb.model.tokenizer import make_tiny_tokenizer
from xtuner_nb.notebook.chat_preview import Answer, answers, chat, clear_chat_cache, compare_answers


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from transformers import Qwen3ForCausalLM

    folder = tmp_path_factory.mktemp("hf-tiny")
    tok = make_tiny_tokenizer(folder)
    hf = Qwen3DenseTinyConfig().hf_config
    hf._attn_implementation = "sdpa"
    torch.manual_seed(0)
    model = Qwen3ForCausalLM(hf)
    model.save_pretrained(folder)
    return model, tok, folder


def _reference(model, tok, prompt, n):
    text = tok.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True)
    ids = tok(text, return_tensors="pt", add_special_tokens=False).input_ids
    model.eval()
    with torch.no_grad():
        out = model.generate(ids, max_new_tokens=n, do_sample=False, eos_token_id=tok.eos_token_id,
                             pad_token_id=tok.pad_token_id)
    return tok.decode(out[0, ids.shape[1]:], skip_special_tokens=True).strip()


def test_in_memory_model_keeps_training_mode_and_matches_generate(tiny):
    model, tok, _ = tiny
    model.train()
    a = chat(model, tok, "What are the three primary colors?", max_new_tokens=12)
    assert isinstance(a, Answer) and a.prompt == "What are the three primary colors?"
    assert model.training  # restored
    assert not any(p.grad is not None for p in model.parameters())  # no_grad
    assert a == _reference(model, tok, "What are the three primary colors?", 12)
    assert 1 <= a.num_tokens <= 12
    assert chat(model, tok, "What are the three primary colors?", max_new_tokens=12) == a  # greedy: repeatable
    assert "<b>assistant</b>" in a._repr_html_()
    model.eval()


def test_folder_path_and_trainer_like_object(tiny):
    from types import SimpleNamespace

    model, tok, folder = tiny
    clear_chat_cache()
    from_path = chat(str(folder), prompt="Hello", max_new_tokens=8)
    assert from_path == chat(model, tok, "Hello", max_new_tokens=8)
    assert chat(folder, "Hello", max_new_tokens=8) == from_path  # a non-folder string is the prompt
    trainer = SimpleNamespace(model=model, tokenizer=tok)
    assert chat(trainer, prompt="Hello", max_new_tokens=8) == from_path
    with_system = chat(model, tok, "Hello", system="Answer briefly.", max_new_tokens=8)
    assert isinstance(with_system, str)
    with pytest.raises(ValueError, match="needs tokenizer"):
        chat(model, prompt="Hello")
    with pytest.raises(FileNotFoundError, match="no config.json"):
        chat(folder / "missing", prompt="Hello")


def test_compare_answers_table(tiny):
    model, tok, _ = tiny
    prompts = ["Hi", "What is 2+2?"]
    before = ["<old answer>", "four?"]
    table = compare_answers(prompts, before=before, after=model, tokenizer=tok, max_new_tokens=6)
    assert table.count("<tr>") == 3 and "&lt;old answer&gt;" in table
    after = answers(model, prompts, tok, max_new_tokens=6)
    assert all(a.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;") in table for a in after)
    with pytest.raises(ValueError, match="got 1 answers for 2 prompts"):
        compare_answers(prompts, before=["x"], after=before)


def test_package_exports_stay_functions_after_every_submodule_is_imported():
    """A re-run notebook cell `from xtuner_nb.notebook import chat` must give the function every time, also after
    the module that defines it has been imported (a submodule named like the function would shadow it)."""
    import importlib
    import pkgutil

    import xtuner_nb.notebook as nb

    for info in pkgutil.iter_modules(nb.__path__):
        importlib.import_module(f"xtuner_nb.notebook.{info.name}")
    for name in nb.__all__:
        from_import = getattr(importlib.import_module("xtuner_nb.notebook"), name)
        assert not isinstance(from_import, type(nb)), f"xtuner_nb.notebook.{name} is a module, not the export"
    from xtuner_nb.notebook import chat as chat_again

    assert chat_again is chat


def test_a_tokenizer_that_returns_token_type_ids(tiny, tmp_path):
    """Tokenizers whose config lists `token_type_ids` among their inputs (BERT-style configs) return them; a
    decoder's `generate` refuses them (transformers 4.57: "model_kwargs are not used by the model")."""
    from transformers import AutoTokenizer

    model, tok, _ = tiny
    tok.save_pretrained(tmp_path)
    typed = AutoTokenizer.from_pretrained(tmp_path, model_input_names=["input_ids", "token_type_ids",
                                                                         "attention_mask"])
    assert "token_type_ids" in typed("hi", return_tensors="pt")
    assert chat(model, typed, "What are the three primary colors?", max_new_tokens=6) == \
        _reference(model, tok, "What are the three primary colors?", 6)
