"""Evaluation during training: eval loss against transformers' own Qwen3, generation checks, rows, torchrun."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from tests.train.eval_script import eval_fields
from tests.train.helpers import losses, small_config
from tests.train.test_subprocess import ENV, REPO

SCRIPT = REPO / "tests/train/eval_script.py"


def _reference_eval_loss(model, tokenizer) -> tuple[float, int]:
    """Token-mean CE of `model` (transformers, sdpa) over every eval sample, each alone, tokenized from the jsonl."""
    from xtuner_nb.datasets import OpenaiTokenizeFunctionConfig
    from xtuner_nb.datasets.demo import demo_data_path

    fn = OpenaiTokenizeFunctionConfig(chat_template="qwen3", max_length=256).build(tokenizer)
    total, count = 0.0, 0
    with torch.no_grad():
        for line in demo_data_path("eval").read_text(encoding="utf-8").splitlines():
            item = fn(json.loads(line))
            ids = torch.tensor([item["input_ids"]])
            labels = torch.tensor(item["labels"][1:] + [-100])
            logits = model(input_ids=ids).logits[0].float()
            total += torch.nn.functional.cross_entropy(logits, labels, ignore_index=-100, reduction="sum").item()
            count += int((labels != -100).sum())
    return total / count, count


def _reference_answer(model, tokenizer, prompt: str, max_new_tokens: int) -> str:
    ids = tokenizer.apply_chat_template([{"role": "user", "content": prompt}], add_generation_prompt=True,
                                        return_tensors="pt", return_dict=True)["input_ids"]
    with torch.no_grad():
        out = model.generate(ids, max_new_tokens=max_new_tokens, do_sample=False, eos_token_id=tokenizer.eos_token_id,
                             pad_token_id=tokenizer.pad_token_id)
    return tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True).strip()


def _hf(tiny_ckpt):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_ckpt, attn_implementation="sdpa", dtype=torch.float32).eval()
    return model, AutoTokenizer.from_pretrained(str(tiny_ckpt))


def test_eval_loss_and_answers_equal_transformers_and_rows_are_logged(tiny_ckpt, tmp_path):
    from xtuner_nb.datasets import demo_prompts
    from xtuner_nb.train import Hook, Trainer

    ref, tok = _hf(tiny_ckpt)
    (q0, _), (q1, a1) = demo_prompts()[:2]
    ref_answer = _reference_answer(ref, tok, q0, 6)
    # prompt 0 expects what transformers answers (right), prompt 1 the demo answer (wrong for a random model),
    # prompt 2 has no expected answer (logged, not scored)
    prompts = [(q0, ref_answer), (q1, a1), q1]
    seen = []

    class Record(Hook):
        def on_eval_end(self, state, metrics, control):
            seen.append((state.step, metrics["eval/loss"]))

    trainer = Trainer.from_config(small_config(tiny_ckpt, tmp_path, total_step=3, eval_interval=2,
                                               **eval_fields(eval_prompts=prompts)), hooks=[Record()])
    before = trainer.evaluate()
    want, count = _reference_eval_loss(ref, tok)
    assert before["eval/loss"] == pytest.approx(want, abs=1e-5)
    assert before["eval/loss_tokens"] == count and before["eval/packs"] == 3
    gens = before["eval/generations"]
    assert gens[0]["answer"] == ref_answer and [g["correct"] for g in gens] == [True, False, None]
    assert before["eval/accuracy"] == 0.5 and before["eval/scored"] == 2

    trainer.fit()
    assert [s for s, _ in seen] == [2, 3]  # every eval_interval steps and at the end
    ref.load_state_dict(trainer.model.state_dict())  # transformers' Qwen3 with the trained weights
    assert seen[-1][1] == pytest.approx(_reference_eval_loss(ref, tok)[0], abs=1e-5)
    assert trainer.evaluator.loader.state_dict()["step"] == 0 and trainer.model.training

    rows = [json.loads(line) for line in
            (trainer.exp_dir / "logs/exp_tracking/rank0/tracker.jsonl").read_text().splitlines()]
    evals = [r for r in rows if "eval/loss" in r]
    assert [r["step"] for r in evals] == [0, 2, 3] and [r["step"] for r in rows if "lr" in r] == [1, 2, 3]
    assert set(evals[1]) >= {"eval/loss", "eval/accuracy", "eval/generations", "eval/loss_tokens", "eval/time"}
    assert set(evals[1]["eval/generations"][0]) == {"prompt", "answer", "expected", "correct"}
    hist = trainer.history  # one row per step, eval joined to the training row
    assert list(hist["step"]) == [0, 1, 2, 3]
    assert hist["eval/loss"].notna().tolist() == [True, False, True, True]
    assert hist.loc[hist.step == 3, "eval/loss"].item() == seen[-1][1]


def test_eval_leaves_the_training_trajectory_unchanged(tiny_ckpt, tmp_path):
    from xtuner_nb.train import Trainer

    plain = Trainer.from_config(small_config(tiny_ckpt, tmp_path / "plain", total_step=3, debug_skip_save=True))
    plain.fit()
    plain_rows, plain_params = plain.history, [p.detach().clone() for p in plain.model.parameters()]
    with_eval = Trainer.from_config(small_config(tiny_ckpt, tmp_path / "eval", total_step=3, debug_skip_save=True,
                                                 eval_interval=1, **eval_fields()))
    rng = torch.get_rng_state()
    with_eval.evaluate()
    assert torch.equal(torch.get_rng_state(), rng)
    with_eval.fit()
    assert losses(with_eval)[1:] == list(plain_rows["loss/reduced_llm_loss"])  # bit-identical; row 0: the eval
    assert list(with_eval.history["grad_norm"])[1:] == list(plain_rows["grad_norm"])
    for a, b in zip(plain_params, with_eval.model.parameters()):
        assert torch.equal(a, b)


def test_torchrun_two_ranks_eval_equals_one_rank_and_transformers(tiny_ckpt, tmp_path):
    over = json.dumps({"total_step": 2, "global_batch_size": 2, "debug_skip_save": True})

    def run(*launcher):
        r = subprocess.run([*launcher, str(SCRIPT), str(tiny_ckpt), str(tmp_path / str(len(launcher))), over],
                           capture_output=True, text=True, env=ENV, cwd=REPO, timeout=600)
        assert r.returncode == 0, r.stderr[-3000:]
        return [json.loads(line[5:]) for line in r.stdout.splitlines() if line.startswith("EVAL ")]

    one = run(sys.executable)
    two = run(sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2")
    assert [r["step"] for r in one] == [r["step"] for r in two] == [0, 2]
    ref, tok = _hf(tiny_ckpt)
    want = _reference_eval_loss(ref, tok)[0]
    assert one[0]["eval/loss"] == pytest.approx(want, abs=1e-5)
    assert two[0]["eval/loss"] == pytest.approx(want, abs=1e-5)  # 3 packs: 2 on rank 0, 1 + a no-op on rank 1
    assert two[1]["eval/loss"] == pytest.approx(one[1]["eval/loss"], abs=1e-4)  # after 2 steps (as training)
    assert [g["answer"] for g in two[0]["eval/generations"]] == [g["answer"] for g in one[0]["eval/generations"]]


# ---- the pieces ----------------------------------------------------------------------------------------------------
def test_config_accepts_pairs_inherits_packing_and_round_trips(tiny_ckpt, tmp_path):
    from xtuner_nb.datasets import DataloaderConfig, demo_prompts
    from xtuner_nb.train import TrainerConfig
    from xtuner_nb.train.config import EvalPrompt
    from xtuner_nb.train.evaluate import eval_dataloader_config

    cfg = small_config(tiny_ckpt, tmp_path, **eval_fields(eval_prompts=[*demo_prompts()[:1], "Hi", EvalPrompt(
        prompt="Q", expected="A", system="S")]))
    assert cfg.eval_prompts[0].expected == demo_prompts()[0][1] and cfg.eval_prompts[1].expected is None
    again = TrainerConfig.from_json(cfg.to_json())
    assert again == cfg
    eval_only_data = DataloaderConfig(dataset_config_list=cfg.eval_dataloader_cfg.dataset_config_list)
    for ev in (eval_only_data, DataloaderConfig.from_json(eval_only_data.to_json())):
        merged = eval_dataloader_config(cfg.dataloader_cfg, ev)
        assert merged.pack_max_length == 256 and merged.dataset_config_list == ev.dataset_config_list
    assert eval_dataloader_config(cfg.dataloader_cfg, cfg.eval_dataloader_cfg).pack_max_length == 128
    with pytest.raises(ValueError, match="dataset_config_list is empty"):
        eval_dataloader_config(cfg.dataloader_cfg, DataloaderConfig(pack_max_length=64))


def test_score_prompts_from_jsonl_and_prompt_rendering(tiny_ckpt, tmp_path):
    from transformers import AutoTokenizer

    from xtuner_nb.datasets import OpenaiTokenizeFunctionConfig
    from xtuner_nb.datasets.demo import demo_data_path
    from xtuner_nb.train.evaluate import prompts_from_jsonl, render_prompt, score, stop_sequences

    assert score(" My name is Lumi. ", "My name is Lumi.", "exact") is True
    assert score("My name is Lumi, hi", "My name is Lumi.", "exact") is False
    assert score("Well: Jasmine tea. Yum", "Jasmine tea.", "contains") is True
    assert score("anything", None, "exact") is None
    pairs = prompts_from_jsonl(demo_data_path("eval"), 2)
    assert pairs == [("Tell me your name.", "My name is Lumi."), ("Which lab built you?", "I was made by Pebble Lab.")]
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"messages": [{"role": "user", "content": "q"}]}\n')
    with pytest.raises(ValueError, match=r"bad.jsonl:1:"):
        prompts_from_jsonl(bad)

    tok = AutoTokenizer.from_pretrained(str(tiny_ckpt))
    fn = OpenaiTokenizeFunctionConfig(chat_template="qwen3").build(tok)
    for system in (None, "You are Lumi."):
        msgs = ([{"role": "system", "content": system}] if system else []) + [
            {"role": "user", "content": "你叫什么名字？"}, {"role": "assistant", "content": "我叫露米。"}]
        item = fn({"messages": msgs})
        first_trained = next(i for i, lab in enumerate(item["labels"]) if lab != -100)
        # the prompt is exactly what training put before the answer
        assert render_prompt(tok, "qwen3", "你叫什么名字？", system) == item["input_ids"][:first_trained]
    hf = render_prompt(tok, "hf", "Hi")
    assert tok.decode(hf) == tok.apply_chat_template([{"role": "user", "content": "Hi"}], tokenize=False,
                                                     add_generation_prompt=True)
    assert [tok.eos_token_id] in stop_sequences(tok, "qwen3")


def test_generations_table_for_the_notebook():
    from xtuner_nb.notebook.eval_view import generations_frame, generations_html, latest_generations

    gens = [{"prompt": "Q<1>", "answer": "A", "expected": "A", "correct": True},
            {"prompt": "Q2", "answer": "B", "expected": "C", "correct": False},
            {"prompt": "Q3", "answer": "x" * 200, "expected": None, "correct": None}]
    rows = [{"step": 1, "loss/reduced_llm_loss": 1.0}, {"step": 2, "eval/loss": 1.0, "eval/generations": gens},
            {"step": 3, "eval/loss": 0.9}]
    assert latest_generations(rows) == (2, gens)
    assert list(generations_frame(rows)["correct"]) == ["✓", "✗", ""]
    page = generations_html(rows[1])
    assert "answers at step 2: 1/2 right" in page and "Q&lt;1&gt;" in page and "x" * 200 not in page
    assert "no generation checks" in generations_html([])
