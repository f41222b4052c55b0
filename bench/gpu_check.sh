#!/usr/bin/env bash
# bench/gpu_check.py on a lent GPU machine (device tool: carry [".whl"], command `bash bench/gpu_check.sh`).
# Installs the carried wheels (.whl/, see the header of gpu_check.py for how to fetch them here), prints the
# machine's versions, then runs the check with its results under $OUT (fetched back by the device tool).
set -uo pipefail
cd "$(dirname "$0")/.."
if compgen -G ".whl/*.whl" >/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    || { echo "installing the carried wheels failed"; exit 1; }
  export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false TRANSFORMERS_VERBOSITY=error
OUT_DIR=${OUT:-/tmp/gpu_check_out}
mkdir -p "$OUT_DIR"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
python3 - <<'PY' || true
import importlib
for m in ("torch", "transformers", "trl", "datasets", "pyarrow", "pydantic", "accelerate", "tokenizers"):
    try:
        print(m, importlib.import_module(m).__version__)
    except Exception as exc:
        print(m, "MISSING:", exc)
PY
# 330 s: the script's own budget (--budget-s 270) plus the last configuration in flight
timeout 330 python3 bench/gpu_check.py --out "$OUT_DIR" "$@" 2>&1 | tee "$OUT_DIR/gpu_check.log"

# QLoRA against LoRA on the GPU (issue 29): tokens/s, peak device memory against the fit check's estimate, loss.
# Needs torchao's wheel among the carried ones and the Qwen3 tokenizer in .whl/qwen3-tokenizer (the machine cannot
# fetch it); here, once: `pip download --no-deps torchao==0.18.0 -d .whl` and
# `cp -r "$(python -c 'from xtuner_nb.assets import qwen3_tokenizer_dir as d; print(d())')" .whl/qwen3-tokenizer`
if [ -d .whl/qwen3-tokenizer ]; then
  timeout 240 python3 bench/qlora.py --cases qwen3 --steps 10 --pack-len 2048 --tokenizer .whl/qwen3-tokenizer \
    --work-dir /tmp/qlora_gpu 2>&1 | tee "$OUT_DIR/qlora.log"
else
  echo "QLoRA step skipped: no .whl/qwen3-tokenizer (see the comment above it in bench/gpu_check.sh)"
fi
