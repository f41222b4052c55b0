"""What the pre-flight check of the data costs, against what building the data costs (its peer in the same run).

    .venv/bin/python bench/preflight_cost.py [--samples 20000] [--max-length 64]

Writes `samples` conversations (the demo conversations with a numbered suffix, a few repeated and a few longer than
`max_length`, so that every finding has work to do) to a temporary jsonl, then times, on the tiny tokenizer:
1. `DataloaderConfig.build` (read, tokenize, pack: what every Trainer pays anyway);
2. `check_loader` on that loader (the pre-flight the Trainer adds), incl. re-tokenizing the truncated samples and
   rendering the first conversations with the tokenizer's own template;
and prints both and their ratio.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from xtuner_nb.datasets import DataloaderConfig, DatasetConfig, OpenaiTokenizeFunctionConfig  # noqa: E402
from xtuner_nb.datasets.demo import demo_data_path  # noqa: E402
from xtuner_nb.datasets.preflight import check_loader  # noqa: E402
from xtuner_nb.model.tokenizer import make_tiny_tokenizer  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--samples", type=int, default=20000)
    ap.add_argument("--max-length", type=int, default=64)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tok = make_tiny_tokenizer(Path(tmp) / "tok")
        base = [json.loads(line) for line in demo_data_path("train").read_text().splitlines() if line.strip()]
        lines = []
        for i in range(args.samples):
            rec = json.loads(json.dumps(base[i % len(base)]))
            if i % 97:  # every 97th stays a repeat of a demo conversation
                rec["messages"][-1]["content"] += f" ({i})" + (" and more" * 30 if i % 50 == 1 else "")
            lines.append(json.dumps(rec, ensure_ascii=False))
        path = Path(tmp) / "data.jsonl"
        path.write_text("\n".join(lines) + "\n")
        cfg = DataloaderConfig(dataset_config_list=[{"dataset": DatasetConfig(anno_path=str(path)),
                                                     "tokenize_fn": OpenaiTokenizeFunctionConfig(
                                                         chat_template="qwen3", max_length=args.max_length)}],
                               pack_max_length=1024)
        t0 = time.perf_counter()
        loader = cfg.build(tok, progress=False)
        build = time.perf_counter() - t0
        t0 = time.perf_counter()
        report = check_loader(loader, cfg.dataset_config_list, tok)
        check = time.perf_counter() - t0
    f = report.files[0]
    print(f"{f.samples} samples: {len(f.truncated)} truncated, {len(f.duplicates)} duplicates, "
          f"{len(f.no_trained)} without a trained token")
    print(f"build the data (tokenize + pack): {build:.2f} s")
    print(f"pre-flight check:                 {check:.2f} s  ({check / build:.2f} x the build)")


if __name__ == "__main__":
    main()
