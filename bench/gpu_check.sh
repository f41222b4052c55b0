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
