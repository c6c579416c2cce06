#!/usr/bin/env bash
# One prepared GPU check, at most ~7 minutes: B/16 224 px inference and training, vitkit's fast paths vs timm.
#
#   bash benchmarks/gpu_check.sh            # on the lent GPU machine (no network): writes $OUT/gpu_table.md
#
# Uses the machine's own python3 and torch (never a CPU venv). timm and torchao are used when they import there;
# a torchao wheel in .whl/ (carried) is installed into /tmp/site without network.
set -u
OUT=${OUT:-/tmp/vitkit-gpu}
mkdir -p "$OUT"
PY=python3
{
  date -u
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv,noheader
  $PY -c 'import sys, torch; print("python", sys.version.split()[0], "torch", torch.__version__, "cuda", torch.cuda.is_available())'
} 2>&1 | tee "$OUT/env.txt"
if ls .whl/torchao-*.whl >/dev/null 2>&1 && ! $PY -c 'import torchao' 2>/dev/null; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/torchao-*.whl \
    && export PYTHONPATH=/tmp/site
fi
for pkg in timm torchao; do
  $PY -c "import $pkg; print('$pkg', $pkg.__version__)" 2>&1 | tail -1 | tee -a "$OUT/env.txt"
done
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
$PY -c 'import vitkit; print("vitkit", vitkit.__version__)' 2>&1 | tee -a "$OUT/env.txt"
timeout 430 $PY benchmarks/gpu_fastpath.py --out "$OUT" --budget 380 "$@" 2>&1 | tee "$OUT/log.txt"
