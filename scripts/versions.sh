#!/usr/bin/env bash
# Which package versions ocrheads installs and is tested with, each run in an environment of its own:
#   versions.sh lock     newest releases pyproject.toml admits, the whole suite, and requirements.lock rewritten from
#                        that environment only if the suite passes (`make lock`);
#   versions.sh compat   the version-sensitive tests under the oldest transformers ocrheads claims (the lock for
#                        everything else) and under the newest release on the registry, newer than the claimed range
#                        if there is one (`make test-compat`). Logs: .venv-compat/<name>.log.
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_WAIT_POLICY=PASSIVE
lock=requirements.lock
compat_tests=(tests/unit/test_compat.py tests/integration/test_adapters.py tests/integration/test_geometry_families.py
    tests/integration/test_geometry_qwen.py tests/integration/test_internvl_conversion.py tests/integration/test_verify.py
    tests/integration/test_precision.py tests/integration/test_qwen2_vl_real_tokenizer.py
    tests/integration/test_attention_capture.py tests/integration/test_attention_edits.py
    tests/integration/test_generate.py tests/integration/test_load_settings.py tests/integration/test_paper_code.py
    tests/integration/test_geometry_anyres.py tests/integration/test_families_cli.py
    tests/integration/test_layer_kinds.py tests/integration/test_geometry_cross.py tests/integration/test_geometry_pooled.py
    tests/integration/test_probe.py tests/integration/test_decoding_steps.py)

fresh_env() {  # a new venv at $1 with the local CPU build of torch (so pip never pulls CUDA packages), then pip "$@"
    local env=$1; shift
    python3 -m venv --clear "$env"
    "$env/bin/python" -m pip install --quiet torch==2.13.0
    "$env/bin/python" -m pip install --quiet "$@"
}

transformers_of() { "$1/bin/python" -c 'import transformers; print(transformers.__version__)'; }

case "${1:-}" in
lock)
    env=.venv-lock
    fresh_env "$env" --upgrade -e '.[dev]'
    echo "testing with transformers $(transformers_of "$env") before locking"
    "$env/bin/python" -m pytest -p no:cacheprovider -n 2 --dist loadfile
    {
        echo "# Every package version the whole suite last passed with: written by 'make lock' (scripts/versions.sh),"
        echo "# never by hand. make test, make demo and .ci/run install with it as a pip constraints file."
        "$env/bin/python" -m pip freeze --exclude-editable | sed -E 's/^(torch==[^+]*)\+.*/\1/'
    } > "$lock.tmp"
    mv "$lock.tmp" "$lock"
    rm -rf "$env"
    echo "wrote $lock"
    ;;
compat)
    oldest=$(sed -nE 's/^TESTED_TRANSFORMERS = \(Version\("([^"]+)"\).*/\1/p' src/ocrheads/compat.py)
    mkdir -p .venv-compat
    grep -v '^transformers==' "$lock" > .venv-compat/oldest.constraints
    fresh_env .venv-compat/oldest -c .venv-compat/oldest.constraints -e '.[dev]' "transformers==$oldest"
    fresh_env .venv-compat/newest -e '.[dev]'
    .venv-compat/newest/bin/python -m pip install --quiet --upgrade transformers 2>/dev/null  # past our cap, if newer
    status=0
    for name in oldest newest; do
        env=.venv-compat/$name
        version=$(transformers_of "$env")
        if "$env/bin/python" -m pytest -p no:cacheprovider -n 2 --dist loadfile "${compat_tests[@]}" > "$env.log" 2>&1; then
            result=passed
        else
            result=FAILED status=1
        fi
        echo "$name: transformers $version: $result ($(grep -E '[0-9]+ (passed|failed)' "$env.log" | tail -n 1 | tr -d '='))"
    done
    exit $status
    ;;
*)
    echo "usage: $0 lock|compat" >&2
    exit 2
    ;;
esac
