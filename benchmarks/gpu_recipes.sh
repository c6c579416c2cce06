#!/usr/bin/env bash
# One prepared GPU session (<= 9 minutes) for the CIFAR-10 results of issues 11, 12 and 15, run side by side on
# the lent GPU (MPS when the machine allows it): the DeiT teacher, a longer MAE pre-training with its fine-tune
# against training from scratch at equal wall time, and a recipe search for cifar10_vit in which each candidate
# trains for the number of steps this 2-core CPU affords it in 30 minutes (its measured CPU step time).
#
#   python benchmarks/gpu_data.py pack ../shared/data/cifar10 gpu_data/cifar10     # here, once
#   bash benchmarks/gpu_recipes.sh                                                   # there, carry gpu_data
set -u
OUT=${OUT:-/tmp/vitkit-gpu}; mkdir -p "$OUT"
export PYTHONPATH="$PWD/src" PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1 VITKIT_DATA=/tmp/data VITKIT_CACHE=/tmp/cache
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee "$OUT/env.txt"
# MPS lets the small jobs' kernels overlap; kept only if a CUDA context opens under it within 60 s.
if nvidia-cuda-mps-control -d >/dev/null 2>&1; then
  if timeout 60 python3 -c 'import torch; torch.ones(1, device="cuda").sum().item()'; then echo "MPS on" | tee -a "$OUT/env.txt"
  else echo quit | nvidia-cuda-mps-control; echo "MPS off" | tee -a "$OUT/env.txt"; fi
fi
python3 benchmarks/gpu_data.py unpack gpu_data/cifar10 /tmp/data/cifar10
python3 -m vitkit data inspect /tmp/data/cifar10 >/dev/null 2>&1 || true
T=${T:-480}
run() {  # run NAME ARGS...: one training job in the background, its console in runs/NAME.console
  local name=$1; shift
  timeout "$T" python3 -m vitkit train --set train.run_name="$name" --set train.sdpa_backend=auto "$@" \
    >"runs/$name.console" 2>&1 &
}
mkdir -p runs
GPU="--set train.precision=bf16"
# The teacher, longer than the CPU allows: its schedule laid out over 6 minutes.
run cifar10_teacher --config cifar10_teacher $GPU --set train.max_minutes=6
# MAE: 4 minutes of pre-training, then 2 of fine-tuning, against 6 of training the same encoder from scratch.
( timeout 300 python3 -m vitkit train --config mae_cifar10 $GPU --set train.sdpa_backend=auto \
    --set train.max_minutes=4 --set train.run_name=mae_gpu >runs/mae_gpu.console 2>&1
  timeout 170 python3 -m vitkit finetune --config finetune_mae_cifar10 --checkpoint runs/mae_gpu/model.safetensors \
    $GPU --set train.sdpa_backend=auto --set train.max_minutes=2 --set train.run_name=mae_gpu_ft \
    >runs/mae_gpu_ft.console 2>&1 ) &
run vit_scratch_gpu --config finetune_mae_cifar10 $GPU --set train.max_minutes=6 --set model.embed_dim=128 \
  --set model.depth=6 --set model.num_heads=4 --set model.mlp_dim=512
# Recipe search: CPU fp32 steps in 30 minutes = 3580 x (base step time / candidate step time).
S="--config cifar10_vit $GPU --set train.max_minutes=null --set train.eval_every_epochs=3"
run r_base $S --set train.max_steps=3580
run r_ema $S --set train.max_steps=3580 --set train.ema_decay=0.998
run r_pad4 $S --set train.max_steps=3580 --set data.padding=4
run r_stem64 $S --set train.max_steps=3250 --set model.stem_channels=[64,128,128]
run r_stem4 $S --set train.max_steps=3250 --set model.stem_channels=[32,64,128,128] --set model.stem_strides=[1,2,1,2]
run r_w160d5 $S --set train.max_steps=3580 --set model.embed_dim=160 --set model.num_heads=5 --set model.mlp_dim=480 \
  --set model.depth=5 --set model.stem_channels=[48,96,160]
sleep 20; nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv | tee -a "$OUT/env.txt"
wait
python3 - <<'PY' | tee "$OUT/summary.md"
import json, pathlib
for run in sorted(pathlib.Path("runs").iterdir()):
    m = run / "metrics.jsonl"
    if not run.is_dir() or not m.exists():
        continue
    rows = [json.loads(line) for line in m.read_text().splitlines() if line.strip()]
    evals = [r for r in rows if any(k.startswith("eval") or k in ("top1", "acc1") for k in r)]
    print(f"| {run.name} | {json.dumps(evals[-1] if evals else rows[-1])[:300]} |")
PY
tail -n 3 runs/*.console > "$OUT/consoles.txt"
tar czf "$OUT/runs.tgz" --exclude='*.pt' --exclude='*checkpoint*' runs
ls -la "$OUT"
