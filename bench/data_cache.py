"""Second start vs first start of the data pipeline on a 50k-sample jsonl, with `cache_dir`.

    .venv/bin/python bench/data_cache.py [--samples 50000] [--pack-max-length 4096]

Both starts run the whole `DataloaderConfig.build` (read, hash, tokenize or load, pack, sampler), in fresh
subprocesses so neither benefits from warm Python objects. The first tokenizes every line with the qwen3
template (per-message encoding, as XTuner) and writes the cache; the second finds the file content hash +
tokenize-function hash in the cache and only loads and checks the token arrays. Prints the ratio.
Tokenizer: the project's locally trained byte-level BPE (`make_tiny_tokenizer`).
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

WORDS_EN = ("the model learns to follow instructions from examples and answers questions about data training "
            "loss packing tokens batch step epoch notebook python gradient learning rate schedule").split()
WORDS_ZH = list("我们用小模型在笔记本里学习微调今天天气很好损失函数梯度训练数据")


def make_jsonl(path: Path, n: int, seed: int = 0) -> None:
    rnd = random.Random(seed)

    def text(lo, hi):
        if rnd.random() < 0.3:
            return "".join(rnd.choice(WORDS_ZH) for _ in range(rnd.randint(lo, hi)))
        return " ".join(rnd.choice(WORDS_EN) for _ in range(rnd.randint(lo, hi)))

    with open(path, "w", encoding="utf-8") as f:
        for _ in range(n):
            msgs = [{"role": "system", "content": "You are a helpful assistant."}] if rnd.random() < 0.3 else []
            for _turn in range(rnd.randint(1, 2)):
                msgs += [{"role": "user", "content": text(3, 20)}, {"role": "assistant", "content": text(5, 40)}]
            f.write(json.dumps({"messages": msgs}, ensure_ascii=False) + "\n")


CHILD = """
import sys, time, json
t0 = time.perf_counter()
from transformers import AutoTokenizer
from xtuner_nb.datasets import DataloaderConfig, DatasetConfig, OpenaiTokenizeFunctionConfig
tok = AutoTokenizer.from_pretrained(sys.argv[1])
t1 = time.perf_counter()
cfg = DataloaderConfig(dataset_config_list=[{"dataset": DatasetConfig(anno_path=sys.argv[2], cache_dir=sys.argv[3]),
    "tokenize_fn": OpenaiTokenizeFunctionConfig(chat_template="qwen3", max_length=4096)}],
    pack_max_length=int(sys.argv[4]))
loader = cfg.build(tok, progress=False)
t2 = time.perf_counter()
print(json.dumps({"build_s": t2 - t1, "cached": loader.stats.datasets[0].from_cache, "samples": loader.stats.samples,
                  "packs": loader.stats.packs, "tokens": loader.stats.tokens}))
"""


def start(tok_dir, data, cache, pack_max_length) -> dict:
    out = subprocess.run([sys.executable, "-c", CHILD, str(tok_dir), str(data), str(cache), str(pack_max_length)],
                         check=True, capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1])
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--samples", type=int, default=50000)
    ap.add_argument("--pack-max-length", type=int, default=4096)
    args = ap.parse_args()
    from xtuner_nb.model.tokenizer import make_tiny_tokenizer

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        make_tiny_tokenizer(tmp / "tok")
        data = tmp / "sft.jsonl"
        make_jsonl(data, args.samples)
        print(f"{args.samples} samples, {data.stat().st_size / 2**20:.1f} MiB jsonl")
        t = time.perf_counter()
        first = start(tmp / "tok", data, tmp / "cache", args.pack_max_length)
        second = start(tmp / "tok", data, tmp / "cache", args.pack_max_length)
        assert not first["cached"] and second["cached"], (first, second)
        assert (first["samples"], first["packs"], first["tokens"]) == (second["samples"], second["packs"],
                                                                        second["tokens"])
        print(f"{first['samples']} samples, {first['tokens']} tokens -> {first['packs']} packs of "
              f"{args.pack_max_length}")
        print(f"first start  (tokenize + write cache): {first['build_s']:.2f} s")
        print(f"second start (load cache):             {second['build_s']:.2f} s")
        print(f"ratio first/second: {first['build_s'] / second['build_s']:.1f}x  (target >= 10x; "
              f"bench wall {time.perf_counter() - t:.0f} s)")


if __name__ == "__main__":
    main()
