"""`python -m xtuner_nb.demo` (what `make demo` runs): the quickstart notebook, executed headless.

The English quickstart (`notebooks/en/01_quickstart.ipynb`) runs top to bottom in a fresh `python3` kernel of this
environment (nbclient), exactly as a learner would run it; the executed copy, with the final dashboard frame (a PNG and
an HTML line) but without widget views and their saved state (megabytes), is written to `build/notebooks/`. Then a short summary is printed: where that file is, the first and
last training loss and the trained model's answer to a demo prompt.

Without the notebook layer (no nbclient/ipykernel/ipywidgets installed, or no `notebooks/` folder, as in a wheel
install) the same training runs as a plain script and the same summary is printed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
QUICKSTART = REPO / "notebooks" / "en" / "01_quickstart.ipynb"
_MARK = "__XTUNER_NB_DEMO_SUMMARY__"

# Run in the notebook's kernel after its last cell; reads what the quickstart built (not saved into the notebook).
_SUMMARY_CODE = f"""
import json as _json
try:
    _h = trainer.history
    _loss = _h["loss/reduced_llm_loss"]
    _s = {{"steps": int(_h["step"].iloc[-1]), "first_loss": float(_loss.iloc[0]),
           "last_loss": float(_loss.iloc[-1]), "exp_dir": str(trainer.exp_dir),
           "prompt": DEMO_PROMPT, "answer": str(answer)}}
except NameError:  # another notebook than the quickstart: nothing to summarise
    _s = {{}}
print({_MARK!r} + _json.dumps(_s, ensure_ascii=False))
"""


def notebook_layer_available() -> bool:
    try:
        import ipykernel  # noqa: F401
        import ipywidgets  # noqa: F401
        import matplotlib  # noqa: F401
        import nbclient  # noqa: F401
        import nbformat  # noqa: F401
    except ImportError:
        return False
    return True


def run_notebook(notebook: Path, out_dir: Path, timeout: int = 900) -> tuple[Path, dict]:
    """Execute `notebook` in a fresh python3 kernel (cwd = its folder); write the executed copy into `out_dir`."""
    import nbformat
    from nbclient import NotebookClient

    # Put this environment's kernelspec first, so "python3" is this interpreter even if the user has another one.
    os.environ["JUPYTER_PATH"] = os.pathsep.join(
        [str(Path(sys.prefix) / "share" / "jupyter"), *filter(None, [os.environ.get("JUPYTER_PATH")])])
    nb = nbformat.read(notebook, as_version=4)
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3", record_timing=True,
                            resources={"metadata": {"path": str(notebook.parent)}})
    summary: dict = {}
    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / notebook.name
    try:
        with client.setup_kernel():
            n_code = sum(c.cell_type == "code" for c in nb.cells)
            done = 0
            for index, cell in enumerate(nb.cells):
                if cell.cell_type == "code":
                    done += 1
                    first = next((ln for ln in cell.source.splitlines() if ln.strip()), "")
                    print(f"[{done}/{n_code}] {first[:90]}", flush=True)
                client.execute_cell(cell, index, execution_count=done if cell.cell_type == "code" else None)
            probe = nbformat.v4.new_code_cell(_SUMMARY_CODE)
            nb.cells.append(probe)
            try:
                client.execute_cell(probe, len(nb.cells) - 1)
            finally:
                nb.cells.remove(probe)  # the saved notebook is the tutorial, not the probe
            summary = _read_summary(probe)
    finally:
        without_widget_state(nb)
        nbformat.write(nb, out)  # also on failure: the executed copy shows where it stopped
    return out, summary


WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


def without_widget_state(nb) -> None:
    """Keep what a reader of the saved notebook sees without a kernel: the dashboard's final frame and the forms'
    static previews. Widget views only render with their saved state, which is most of the file's size."""
    nb.metadata.pop("widgets", None)
    for cell in nb.cells:
        kept = []
        for output in cell.get("outputs", []):
            data = output.get("data")
            if data is not None and WIDGET_VIEW in data:
                del data[WIDGET_VIEW]
                if set(data) <= {"text/plain"}:
                    continue  # a widget's repr only (e.g. "HBox(children=...)"): nothing to show
            kept.append(output)
        if cell.cell_type == "code":
            cell.outputs = kept


def _read_summary(cell) -> dict:
    for output in cell.get("outputs", []):
        for line in output.get("text", "").splitlines():
            if line.startswith(_MARK):
                return json.loads(line[len(_MARK):])
    return {}


def run_script(out_dir: Path, total_step: int = 120) -> dict:
    """The quickstart's training as a plain script (no notebook layer): same model, data and hyper-parameters."""
    from .config import AdamWConfig, LRConfig
    from .datasets import DataloaderConfig, DatasetConfig, OpenaiTokenizeFunctionConfig
    from .datasets.demo import demo_data_path, demo_prompts
    from .model import Qwen3DenseConfig, make_tiny_checkpoint
    from .train import Trainer, TrainerConfig

    work = out_dir.parent / "demo_script"
    model_path = make_tiny_checkpoint(work / "tiny-qwen3")
    config = TrainerConfig(
        model_cfg=Qwen3DenseConfig.from_hf(model_path), load_from=model_path, tokenizer_path=model_path,
        dataloader_cfg=DataloaderConfig(
            dataset_config_list=[{"dataset": DatasetConfig(anno_path=str(demo_data_path("train"))),
                                  "tokenize_fn": OpenaiTokenizeFunctionConfig(chat_template="qwen3", max_length=1024)}],
            pack_max_length=1024),
        optim_cfg=AdamWConfig(lr=3e-3), lr_cfg=LRConfig(lr_type="cosine", lr_min=3e-4),
        total_step=total_step, work_dir=work / "runs")
    trainer = Trainer.from_config(config)
    trainer.fit()
    prompt = demo_prompts()[0][0]
    answer = greedy_answer(trainer.exp_dir / "hf-latest", prompt)
    loss = trainer.history["loss/reduced_llm_loss"]
    return {"steps": int(trainer.history["step"].iloc[-1]), "first_loss": float(loss.iloc[0]),
            "last_loss": float(loss.iloc[-1]), "exp_dir": str(trainer.exp_dir), "prompt": prompt, "answer": answer}


def greedy_answer(hf_dir: Path, prompt: str, max_new_tokens: int = 64) -> str:
    """Answer `prompt` with an exported HF folder through its chat template (greedy), using transformers only."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(hf_dir))
    model = AutoModelForCausalLM.from_pretrained(str(hf_dir), dtype=torch.float32).eval()
    ids = tok.apply_chat_template([{"role": "user", "content": prompt}], add_generation_prompt=True,
                                  return_tensors="pt", return_dict=True)["input_ids"]
    with torch.no_grad():
        out = model.generate(ids, max_new_tokens=max_new_tokens, do_sample=False, eos_token_id=tok.eos_token_id,
                             pad_token_id=tok.pad_token_id)
    return tok.decode(out[0, ids.shape[1]:], skip_special_tokens=True).strip()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m xtuner_nb.demo", description=__doc__.splitlines()[0])
    ap.add_argument("--notebook", type=Path, default=QUICKSTART, help="the notebook to execute")
    ap.add_argument("--out", type=Path, default=None, help="folder for the executed copy (default: build/notebooks)")
    ap.add_argument("--timeout", type=int, default=900, help="seconds allowed per cell")
    ap.add_argument("--script", action="store_true", help="run the training as a script, without a notebook")
    args = ap.parse_args(argv)
    if args.notebook != QUICKSTART and not args.notebook.exists():
        ap.error(f"no notebook at {args.notebook}")
    # One intra-op thread (inherited by the kernel): the tiny model's matmuls are too small to gain from more, and
    # on a small shared CPU extra threads made each step several times slower. OMP_NUM_THREADS=N overrides it.
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    base = REPO if (REPO / "notebooks").is_dir() else Path.cwd()
    out_dir = (args.out or base / "build" / "notebooks").resolve()
    t0 = time.time()
    if not args.script and args.notebook.exists() and notebook_layer_available():
        print(f"executing {args.notebook} headless (kernel python3: {sys.executable})", flush=True)
        try:
            path, summary = run_notebook(args.notebook.resolve(), out_dir, args.timeout)
        except Exception as exc:  # a failing cell: say which, and where the partly executed copy is
            from nbclient.exceptions import CellExecutionError

            if not isinstance(exc, CellExecutionError):
                raise
            print(f"\n{exc}", file=sys.stderr)
            print(f"\nthe demo stopped at a failing cell; executed part: {out_dir / args.notebook.name}",
                  file=sys.stderr)
            return 1
        print(f"\nexecuted notebook (open it in JupyterLab, or `make lab`): {path}")
    else:
        why = "asked for" if args.script else ("no notebook layer installed" if args.notebook.exists()
                                               else f"{args.notebook} not found")
        print(f"running the quickstart training as a script ({why})", flush=True)
        summary = run_script(out_dir)
    print(f"wall time: {time.time() - t0:.0f} s")
    if summary:
        print(f"training: {summary['steps']} steps, loss {summary['first_loss']:.3f} -> {summary['last_loss']:.3f}")
        print(f"run folder (checkpoints, hf-latest, logs): {summary['exp_dir']}")
        print(f"prompt: {summary['prompt']}\nanswer: {summary['answer']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
