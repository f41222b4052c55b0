"""Step losses of every tracker.jsonl a test run wrote, to show that a refactor changed no number.

    python tools/step_losses.py collect ROOT [ROOT ...] --out before.json   # after a pytest run (--basetemp=ROOT)
    python tools/step_losses.py compare before.json after.json

A run's key is its tracker file's path under ROOT with each time-stamped exp_dir (YYYYmmddHHMMSS[_1...]) replaced by
its index among its siblings, so the same test gives the same key in both runs. Only the numbers a refactor must
not move are kept: the step's reduced and local loss and the grad norm (times and throughput vary run to run).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

STAMP = re.compile(r"^\d{14}(_1)*$")
KEYS = ("loss/reduced_llm_loss", "loss/local_loss", "grad_norm", "eval/loss")


def run_key(tracker: Path, root: Path) -> str:
    parts = []
    here = root
    for name in tracker.relative_to(root).parts:
        if STAMP.match(name):
            siblings = sorted(p.name for p in here.iterdir() if STAMP.match(p.name))
            parts.append(f"exp{siblings.index(name)}")
        else:
            parts.append(re.sub(r"\d+$", "N", name) if name.startswith("pytest-of") else name)
        here = here / name
    return "/".join(parts)


def collect(roots: list[Path]) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for root in roots:
        for tracker in sorted(root.rglob("tracker.jsonl")):
            rows = []
            for line in tracker.read_text(encoding="utf-8").splitlines():
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    continue  # a torn last line of a killed run
                kept = {k: row[k] for k in KEYS if k in row}
                if kept:
                    rows.append({"step": row.get("step"), **kept})
            out[f"{root.name}/{run_key(tracker, root)}"] = rows
    return out


def compare(before: dict, after: dict) -> int:
    common = sorted(set(before) & set(after))
    only_b, only_a = sorted(set(before) - set(after)), sorted(set(after) - set(before))
    values, worst, differing = 0, 0.0, []
    for key in common:
        b, a = before[key], after[key]
        for rb, ra in zip(b, a):
            for k in KEYS:
                if k in rb or k in ra:
                    values += 1
                    x, y = rb.get(k), ra.get(k)
                    if x != y:
                        diff = abs(x - y) if isinstance(x, (int, float)) and isinstance(y, (int, float)) else float("inf")
                        worst = max(worst, diff)
                        differing.append(f"{key} step {rb.get('step')} {k}: {x} vs {y}")
        if len(a) != len(b):
            differing.append(f"{key}: {len(b)} rows before, {len(a)} after")
    print(f"{len(common)} tracker files in both runs, {values} values compared, {len(differing)} differ "
          f"(max |diff| {worst:g})")
    for line in differing[:40]:
        print("  " + line)
    for name, keys in (("only before", only_b), ("only after", only_a)):
        if keys:
            print(f"{name}: {len(keys)}")
            for k in keys[:20]:
                print("  " + k)
    return 1 if differing else 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("collect")
    c.add_argument("roots", nargs="+", type=Path)
    c.add_argument("--out", type=Path, required=True)
    d = sub.add_parser("compare")
    d.add_argument("before", type=Path)
    d.add_argument("after", type=Path)
    args = p.parse_args(argv)
    if args.cmd == "collect":
        data = collect(args.roots)
        args.out.write_text(json.dumps(data, indent=1), encoding="utf-8")
        print(f"{len(data)} tracker files, {sum(len(v) for v in data.values())} rows -> {args.out}")
        return 0
    return compare(json.loads(args.before.read_text()), json.loads(args.after.read_text()))


if __name__ == "__main__":
    sys.exit(main())
