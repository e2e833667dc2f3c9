#!/usr/bin/env bash
# Issue 18's GPU figures in calls of under 10 minutes on a CUDA machine that has torch (and Triton)
# but not the rest of dreamworld's needs, such as the H200 the project is sometimes lent. Results
# (text and JSON) land in $OUT, or /tmp/gpu-check.
#
# Prepare on a machine with pip, in the repository root (23 MB of wheels for Python 3.12):
#   echo /.whl/ >> .git/info/exclude
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#     --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 -d .whl \
#     omegaconf==2.4.0 gymnasium==1.4.0 farama-notifications==0.0.4 cma==4.5.0 mujoco==3.11.0 glfw pyopengl
# Then, on the GPU machine (with .whl beside the code):
#   bash benchmarks/gpu_check.sh updates   # size12m and size50m from pixels: fp32/bf16 x eager/captured
#   bash benchmarks/gpu_check.sh vectors   # the same sizes from vectors, and batch 64 from pixels
#   bash benchmarks/gpu_check.sh learn     # DreamerV3 on gymnasium's Walker2d-v5 for 8 minutes
set -euo pipefail
what=${1:-updates}
out=${OUT:-/tmp/gpu-check}
mkdir -p "$out"
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
fi
export PYTHONPATH=/tmp/site:$PWD/src PYTHONUNBUFFERED=1 MUJOCO_GL=egl
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$out/gpu.txt"
bench=(python3 benchmarks/throughput.py --device cuda --sizes size12m size50m --profile --updates 10 --blocks 3 --env '')
case "$what" in
  updates)
    timeout 540 "${bench[@]}" --obs image --precision float32 bfloat16 --compile none cudagraphs \
      --json "$out/updates.json" 2>&1 | tee "$out/updates.txt"
    ;;
  vectors)
    timeout 270 "${bench[@]}" --obs vector --precision bfloat16 --compile none cudagraphs \
      --json "$out/vectors.json" 2>&1 | tee "$out/vectors.txt"
    timeout 270 "${bench[@]}" --obs image --precision bfloat16 --compile cudagraphs --batch 64 \
      --json "$out/batch64.json" 2>&1 | tee "$out/batch64.txt"
    ;;
  learn)
    timeout 540 python3 -m dreamworld.cli train --algo dreamerv3 --env gym/Walker2d-v5 --preset size12m \
      --env.obs vector --dreamer.max_hours 0.13 --dreamer.eval_every 20000 --dreamer.eval_episodes 3 \
      --dreamer.train_ratio 512 --steps 1000000 --log.progress false --logdir /tmp/walker \
      2>&1 | tee "$out/learn.txt"
    cp /tmp/walker/metrics.jsonl /tmp/walker/scores.jsonl "$out/" || true
    ;;
  *)
    echo "usage: bash benchmarks/gpu_check.sh updates|vectors|learn" >&2
    exit 2
    ;;
esac
