"""Ask the model a question through its chat template: the in-memory model (during or after training), a Trainer,
or an exported HF folder (`hf-*`, any `AutoModelForCausalLM` folder).

    before = answers(trainer, prompts)            # before fit(): the in-memory model changes as it trains
    trainer.fit()
    compare_answers(prompts, before=before, after=trainer)
    chat("work_dir/run/hf-latest", prompt="What are the three primary colors?")

Generation runs under `torch.no_grad()` in eval mode; the model's training mode is restored afterwards, so calling
this between `fit()` calls is safe.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any, Sequence

from .viewer import Html

__all__ = ["chat", "answers", "compare_answers", "Answer", "clear_chat_cache"]

_CACHE: dict[tuple[str, float], tuple[Any, Any]] = {}  # loaded folders, most recent last
_CACHE_SIZE = 2


class Answer(str):
    """The generated text (a str), shown in a notebook as the prompt and the reply."""

    prompt: str = ""
    num_tokens: int = 0  # generated tokens (the end token included)

    def _repr_html_(self) -> str:
        return (f"<div style='font-family:sans-serif;font-size:0.92em'>"
                f"<div style='color:#555'><b>user</b>: {html.escape(self.prompt)}</div>"
                f"<div style='white-space:pre-wrap;background:#f4f8ff;border-left:3px solid #1e88e5;"
                f"padding:4px 8px;margin-top:2px'><b>assistant</b>: {html.escape(str(self))}</div></div>")


def clear_chat_cache() -> None:
    """Forget the models loaded from folders (frees their memory)."""
    _CACHE.clear()


def _load_folder(path: Path):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"{path}: no config.json; pass an exported HF folder (e.g. <exp_dir>/hf-latest)")
    stamp = max((p.stat().st_mtime for p in path.iterdir() if p.is_file()), default=0.0)
    key = (str(path.resolve()), stamp)
    if key in _CACHE:
        _CACHE[key] = _CACHE.pop(key)
        return _CACHE[key]
    cuda = torch.cuda.is_available()
    model = AutoModelForCausalLM.from_pretrained(str(path), dtype=torch.bfloat16 if cuda else torch.float32)
    model.to("cuda" if cuda else "cpu").eval()
    tokenizer = AutoTokenizer.from_pretrained(str(path))
    _CACHE[key] = (model, tokenizer)
    while len(_CACHE) > _CACHE_SIZE:
        _CACHE.pop(next(iter(_CACHE)))
    return model, tokenizer


def _resolve(model_or_path: Any, tokenizer: Any):
    import torch

    if isinstance(model_or_path, (str, Path)):
        model, folder_tok = _load_folder(Path(model_or_path))
        return model, tokenizer or folder_tok
    if not isinstance(model_or_path, torch.nn.Module) and hasattr(model_or_path, "model"):  # a Trainer
        model = model_or_path.model
        tokenizer = tokenizer or getattr(model_or_path, "tokenizer", None)
    else:
        model = model_or_path
    if tokenizer is None:
        raise ValueError("chat() needs tokenizer=... with an in-memory model (or pass the Trainer, or a folder path)")
    return model, tokenizer


def chat(model_or_path: Any, tokenizer: Any = None, prompt: str | None = None, *, system: str | None = None,
         max_new_tokens: int = 64, greedy: bool = True, messages: list[dict[str, str]] | None = None,
         temperature: float = 0.7, top_p: float = 0.9, **template_kwargs: Any) -> Answer:
    """Generate the assistant's reply to `prompt` (or to a full `messages` list) through the chat template.

    `model_or_path`: a transformers causal LM (then pass `tokenizer`), a Trainer (its `.model` and `.tokenizer`),
    or a folder with `config.json` + weights + tokenizer. `chat(model, tok, "Hi")` and `chat(path, prompt="Hi")`
    both work; `chat(path, "Hi")` too (a string that is not a folder is taken as the prompt).
    """
    import torch

    if prompt is None and messages is None and isinstance(tokenizer, str) and not Path(tokenizer).is_dir():
        prompt, tokenizer = tokenizer, None
    model, tokenizer = _resolve(model_or_path, tokenizer)
    if messages is None:
        if prompt is None:
            raise ValueError("chat() needs a prompt (or messages=[...])")
        messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": prompt}]
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True, **template_kwargs)
    enc = tokenizer(text, return_tensors="pt", add_special_tokens=False)
    device = next(model.parameters()).device
    # a decoder takes ids and their mask; `generate` refuses the rest (e.g. `token_type_ids` from BERT-style configs)
    enc = {k: enc[k].to(device) for k in ("input_ids", "attention_mask") if k in enc}

    eos = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    gen_eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    eos += [e for e in (gen_eos if isinstance(gen_eos, list) else [gen_eos]) if e is not None and e not in eos]
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (eos[0] if eos else 0)
    sampling = dict(do_sample=False, temperature=None, top_p=None, top_k=None) if greedy else \
        dict(do_sample=True, temperature=temperature, top_p=top_p)

    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = model.generate(**enc, max_new_tokens=max_new_tokens, eos_token_id=eos or None, pad_token_id=pad,
                                 **sampling)
    finally:
        model.train(was_training)
    new_tokens = out[0, enc["input_ids"].shape[1]:]
    answer = Answer(tokenizer.decode(new_tokens, skip_special_tokens=True).strip())
    answer.prompt = prompt if prompt is not None else messages[-1].get("content", "")
    answer.num_tokens = int(new_tokens.numel())
    return answer


def answers(model_or_path: Any, prompts: Sequence[str], tokenizer: Any = None, **kwargs: Any) -> list[str]:
    """`chat` for each prompt (greedy by default, so a rerun gives the same answers)."""
    return [str(chat(model_or_path, tokenizer, p, **kwargs)) for p in prompts]


def _answers_of(side: Any, prompts: Sequence[str], tokenizer: Any, kwargs: dict) -> list[str]:
    if isinstance(side, dict):
        return [str(side.get(p, "")) for p in prompts]
    if isinstance(side, (list, tuple)):
        if len(side) != len(prompts):
            raise ValueError(f"got {len(side)} answers for {len(prompts)} prompts")
        return [str(a) for a in side]
    return answers(side, prompts, tokenizer, **kwargs)


def compare_answers(prompts: Sequence[str], before: Any, after: Any, *, tokenizer: Any = None,
                    labels: tuple[str, str] = ("before", "after"), **kwargs: Any) -> Html:
    """An HTML table prompt | before | after. Each side: answers already computed (a list, or a dict by prompt),
    or anything `chat` accepts (model + `tokenizer`, Trainer, folder path)."""
    left = _answers_of(before, prompts, tokenizer, kwargs)
    right = _answers_of(after, prompts, tokenizer, kwargs)
    cell = "border:1px solid #ddd;padding:4px 8px;vertical-align:top;white-space:pre-wrap;text-align:left"
    rows = "".join(
        f"<tr><td style='{cell};color:#333'>{html.escape(p)}</td><td style='{cell};color:#777'>{html.escape(a)}</td>"
        f"<td style='{cell}'>{html.escape(b)}</td></tr>" for p, a, b in zip(prompts, left, right))
    head = "".join(f"<th style='{cell};background:#f5f5f5'>{html.escape(h)}</th>" for h in ("prompt", *labels))
    return Html(f"<table style='border-collapse:collapse;font-size:0.9em'><tr>{head}</tr>{rows}</table>")
