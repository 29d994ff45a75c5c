#!/usr/bin/env bash
# The accelerator check of issue 18, one command, under 8 minutes on one GPU with compilation:
# the floor, Grad-CAM, LRP (epsilon-plus) and the fooling step (Grad-CAM, LRP_T) of ResNet50
# and VGG16 at batches 1 and 32, float32 and bfloat16, against Captum / pytorch-grad-cam /
# Zennit / PyTorch (`python -m benchmarks.throughput --preset device`). Writes results.json,
# results.md and speedups.png under --out (default runs/device_check).
#
#   bash benchmarks/device_check.sh                  # on the GPU machine
#   bash benchmarks/device_check.sh --tiny           # the same on CPU: resnet18, 64 px, 1 rep
#   bash benchmarks/device_check.sh --out DIR [any benchmarks.throughput option]
#
# On the GPU the run stops after DEVICE_CHECK_LIMIT_S seconds (default 470) with what it has
# measured: results.json is rewritten after every measurement. Compiled programs are cached in
# JAX_COMPILATION_CACHE_DIR (default runs/xla_cache), so a second run skips most compilation.
set -euo pipefail
cd "$(dirname "$0")/.."
py="${PYTHON:-.venv/bin/python}"
[[ -x "$py" ]] || py=python3
out=runs/device_check
tiny=0
args=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --tiny) tiny=1; shift ;;
    --out) out="$2"; shift 2 ;;
    *) args+=("$1"); shift ;;
  esac
done
if [[ $tiny == 1 ]]; then
  exec "$py" -m benchmarks.throughput --preset tiny --archs resnet18 --size 64 --batches 1 \
    --fooling-batches 1 --reps 1 --methods gradcam lrp fooling --no-xla-conv --no-progress \
    --out "$out" ${args[@]+"${args[@]}"}
fi
export JAX_COMPILATION_CACHE_DIR="${JAX_COMPILATION_CACHE_DIR:-runs/xla_cache}"
export JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="${JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS:-1}"
"$py" -c 'import jax; print("jax devices:", jax.devices())'
exec timeout --signal=INT --kill-after=30 "${DEVICE_CHECK_LIMIT_S:-470}" \
  "$py" -m benchmarks.throughput --preset device --out "$out" ${args[@]+"${args[@]}"}
