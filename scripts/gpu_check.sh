#!/usr/bin/env bash
# The GPU check, in one call, under one deadline (8 minutes; GPU_CHECK_SECONDS to change it): the device-sensitive
# tests on cuda, and those a machine with torchvision could fail (pages must still go through PIL); verify, demo (data, OCR and retrieval scores, select, analyze, overlays, mask, sink, report), gold
# OCR scores and causal scores (estimate and exact, zero and mean ablation) on the bundled model; verify, OCR
# scores (gold and generated) and causal scores on a Qwen2-VL-2B-shaped model built on the GPU in bfloat16; last,
# benchmarks/bench_gpu.py on the 2B and 7B shapes with what time is left (its tables print shape by shape).
# Writes two files to OUT: gpu-check.log (everything) and results.md (one line a step: status, seconds, last line;
# then the benchmark's tables).
#   bash scripts/gpu_check.sh OUT             on a GPU machine; wheels in .gpu-wheels (scripts/gpu_wheels.sh) are
#                                             installed first with no network; PYTHON names the interpreter
#                                             (default python3, whose environment holds CUDA torch)
#   bash scripts/gpu_check.sh --dry-run OUT   the same steps on the CPU with tiny shapes, the tests on virtual
#                                             GPUs (the suite runs this, so the script cannot rot, and a test
#                                             helper that would fail on a GPU fails here)
set -uo pipefail
cd "$(dirname "$0")/.."
dry=0
if [ "${1:-}" = --dry-run ]; then dry=1; shift; fi
out="${1:-runs/gpu-check}"
mkdir -p "$out"
out=$(cd "$out" && pwd)
log="$out/gpu-check.log" results="$out/results.md"
: > "$log"
deadline=$(($(date +%s) + ${GPU_CHECK_SECONDS:-480}))
work=$(mktemp -d)  # checkpoints and runs: not under OUT, which comes back whole
trap 'rm -rf "$work"' EXIT
export OMP_WAIT_POLICY=PASSIVE HF_HUB_OFFLINE=1 PYTHONPATH="src${PYTHONPATH:+:$PYTHONPATH}"
if [ "$dry" = 1 ]; then
    python="${PYTHON:-.venv/bin/python}" device=cpu dtype=float32 shape=tiny tests_device=virtual
    samples=2 lengths=(200 1024) batch=2 precisions=(float32)
else
    python="${PYTHON:-python3}" device=cuda dtype=bfloat16 shape=2b tests_device=cuda
    samples=16 lengths=(1024 2048) batch=8 precisions=(float32 bfloat16)
    if [ -d .gpu-wheels ]; then
        "$python" -m pip install -q --no-index --no-deps --no-compile --target "$work/site" .gpu-wheels/*.whl >> "$log" 2>&1
        export PYTHONPATH="src:$work/site${PYTHONPATH#src}"
    fi
fi
ocrheads=("$python" -m ocrheads)
bundled=src/ocrheads/demo/model
echo "| step | status | seconds | last line |" > "$results"
echo "|---|---|---|---|" >> "$results"

step() {  # step NAME COMMAND...: runs under what is left of the deadline, logs everything, adds one results line
    local name=$1 left=$((deadline - $(date +%s))) start rc status last
    shift
    if ((left < 5)); then
        echo "| $name | skipped | 0 | the deadline had passed |" >> "$results"
        return
    fi
    echo "=== $name: $*" >> "$log"
    start=$(date +%s.%N)
    timeout "$left" "$@" > "$work/step.log" 2>&1
    rc=$?
    cat "$work/step.log" >> "$log"
    case $rc in 0) status=ok ;; 124) status="timed out" ;; *) status="failed ($rc)" ;; esac
    last=$(grep -v '^\s*$' "$work/step.log" | tail -n 1 | tr -d '|' | cut -c1-160)
    echo "| $name | $status | $(printf '%.1f' "$(echo "$(date +%s.%N) - $start" | bc)") | $last |" >> "$results"
}

step environment "$python" -c "import importlib.util, torch, transformers, ocrheads
gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no GPU'
vision = 'torchvision installed' if importlib.util.find_spec('torchvision') else 'no torchvision'
print(f'torch {torch.__version__}, transformers {transformers.__version__}, ocrheads {ocrheads.__version__}, {gpu}, '
      f'{vision}')"
step tests env OCRHEADS_TEST_DEVICE="$tests_device" "$python" -m pytest -q -p no:cacheprovider \
    tests/integration/test_precision.py tests/integration/test_verify.py tests/integration/test_score_ocr.py \
    tests/integration/test_score_retrieval.py tests/integration/test_attention_capture.py \
    tests/integration/test_attention_edits.py tests/integration/test_causal.py tests/integration/test_score_causal.py \
    tests/integration/test_sinks.py tests/integration/test_report.py tests/integration/test_capture_syncs.py \
    tests/integration/test_decoding_steps.py tests/integration/test_load_settings.py \
    tests/integration/test_paper_code.py \
    tests/integration/test_internvl_conversion.py::test_the_processor_tiles_as_the_original_and_the_geometry_follows
for precision in "${precisions[@]}"; do
    step "verify bundled $precision" "${ocrheads[@]}" verify --model "$bundled" --device "$device" --dtype "$precision"
done
step "demo bundled" "${ocrheads[@]}" demo --out "$work/demo" --device "$device" --score-samples "$samples" \
    --eval-samples "$samples" --k 2 --random-seeds 1 --batch-size "$batch"
images="$work/demo/data/score-image" texts="$work/demo/data/score-text" on_bundled=(--model "$bundled" --device "$device" --quiet)
step "score ocr gold bundled" "${ocrheads[@]}" score ocr --data "$images" --out "$work/gold" --answers gold \
    --batch-size "$batch" "${on_bundled[@]}"
step "score causal bundled" "${ocrheads[@]}" score causal --data "$images" --out "$work/causal" --exact \
    --batch-size "$batch" "${on_bundled[@]}"
step "score causal mean bundled" "${ocrheads[@]}" score causal --data "$texts" --out "$work/causal-mean" --exact \
    --ablation mean --mean-samples 2 --batch-size "$batch" "${on_bundled[@]}"
step "build $shape" "$python" scripts/shaped_checkpoint.py "$shape" "$work/$shape" --device "$device" --dtype "$dtype"
step "data paper passkeys" "${ocrheads[@]}" data passkey --n "$samples" --lengths "${lengths[@]}" --out "$work/paper" \
    --quiet
on_shape=(--model "$work/$shape" --device "$device" --quiet)
step "verify $shape" "${ocrheads[@]}" verify --model "$work/$shape" --device "$device"
step "score ocr gold $shape" "${ocrheads[@]}" score ocr --data "$work/paper" --out "$work/$shape-run" --answers gold \
    --batch-size "$batch" "${on_shape[@]}"
step "score ocr generated $shape" "${ocrheads[@]}" score ocr --data "$work/paper" --out "$work/$shape-generated" \
    --max-new-tokens 8 --batch-size "$batch" "${on_shape[@]}"
step "score causal $shape" "${ocrheads[@]}" score causal --data "$work/paper" --out "$work/$shape-run" \
    --batch-size "$batch" "${on_shape[@]}"
bench=(--shapes 2b 7b)
[ "$dry" = 1 ] && bench=(--dry-run)
step "benchmark" bash -o pipefail -c '"$0" benchmarks/bench_gpu.py "$@" | tee "'"$work"'/bench.md"' "$python" "${bench[@]}"
echo >> "$results"
cat "$work/bench.md" >> "$results" 2>/dev/null
cat "$results"
! grep -qE '\| (failed|timed out|skipped)' "$results"
