#!/usr/bin/env bash
# The GPU checks, in one go (target: under 8 minutes on one GPU): the device-sensitive tests on cuda, the parity
# check on the demo model in bfloat16, the whole-process overhead of scoring against plain generate, and the cost of
# causal estimates against a plain forward pass (issue 19's 3x target).
# Run from the repository root after `make test` has built .venv with a CUDA build of torch, or with PYTHON naming
# an interpreter whose environment holds CUDA torch and ocrheads' dependencies (src/ is put on its path):
#   [PYTHON=python3] bash scripts/gpu_check.sh [OUT_DIR]    (logs and tables go to OUT_DIR, default runs/gpu-check)
set -euo pipefail
out="${1:-runs/gpu-check}"
mkdir -p "$out"
python="${PYTHON:-.venv/bin/python}"
export PYTHONPATH="src${PYTHONPATH:+:$PYTHONPATH}"
export OMP_WAIT_POLICY=PASSIVE HF_HUB_OFFLINE=1
"$python" -c "import torch; assert torch.cuda.is_available(), 'no CUDA GPU visible'; print(torch.cuda.get_device_name(0))" \
    | tee "$out/gpu.txt"
OCRHEADS_TEST_DEVICE=cuda "$python" -m pytest -q tests/integration/test_precision.py tests/integration/test_verify.py \
    tests/integration/test_score_ocr.py tests/integration/test_attention_capture.py 2>&1 | tee "$out/tests.log"
for dtype in float32 bfloat16 float16; do
    "$python" -m ocrheads verify --model src/ocrheads/demo/model --device cuda --dtype "$dtype" 2>&1 | tee "$out/verify-$dtype.log"
done
"$python" benchmarks/bench_overhead.py --device cuda 2>&1 | tee "$out/overhead.md"
"$python" benchmarks/bench_causal.py --part cost --device cuda 2>&1 | tee "$out/causal-cost.md"
OCRHEADS_TEST_DEVICE=cuda "$python" -m pytest -q tests/integration/test_causal.py 2>&1 | tee "$out/causal-tests.log"
