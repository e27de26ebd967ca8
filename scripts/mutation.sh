#!/usr/bin/env bash
# Mutation testing (issue 33) of the modules whose every line matters to a number in a paper, each against its own
# fast tests, with cosmic-ray: it mutates one file of a plain copy of the tree at a time and runs any test command,
# so the src layout and the editable install need nothing special, and its session file resumes an interrupted run.
#   scripts/mutation.sh [MODULE ...]     all modules, or those whose path contains one of the words given
# Work in .mutation/ (a copy of src and tests per module, its session, its report; a change to the module, the test
# helpers or the module's own tests starts it afresh; after changes elsewhere, rm -r .mutation/<module> to rerun it);
# summary: .mutation/summary.md.
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_WAIT_POLICY=PASSIVE OMP_NUM_THREADS=1
env=.venv-mutation
work=.mutation
modules=(  # module : its tests (space-separated)
    "src/ocrheads/eval/metrics.py:tests/unit/test_metrics.py"
    "src/ocrheads/scoring/alignment.py:tests/unit/test_alignment.py"
    "src/ocrheads/geometry.py:tests/unit/test_geometry.py"
    "src/ocrheads/scoring/evidence.py:tests/unit/test_evidence.py"
    "src/ocrheads/select.py:tests/unit/test_select_reference.py tests/unit/test_select_rules.py"
    "src/ocrheads/analysis/stats.py:tests/unit/test_stats.py tests/unit/test_select_reference.py"
    "src/ocrheads/analysis/stability.py:tests/unit/test_stability.py"
    "src/ocrheads/scoring/ocr.py:tests/integration/test_score_ocr.py tests/integration/test_batch_invariance.py::test_ocr_scores_are_the_same_alone_and_in_a_padded_batch"
    "src/ocrheads/scoring/retrieval.py:tests/integration/test_score_retrieval.py tests/unit/test_copy_hits.py tests/integration/test_batch_invariance.py::test_retrieval_scores_are_the_same_alone_and_in_a_padded_batch"
    "src/ocrheads/scoring/attribution.py:tests/integration/test_causal.py"
)

if [ ! -f "$env/.installed" ]; then
    python3 -m venv --clear "$env"
    "$env/bin/python" -m pip install --quiet -c requirements.lock torch==2.13.0
    "$env/bin/python" -m pip install --quiet -c requirements.lock -e '.[dev]' cosmic-ray==8.7.0
    touch "$env/.installed"
fi

chosen=()
for entry in "${modules[@]}"; do
    if [ "$#" -eq 0 ]; then chosen+=("$entry"); continue; fi
    for word in "$@"; do [[ "${entry%%:*}" == *"$word"* ]] && chosen+=("$entry") && break; done
done

run_module() {  # one module in its own copy of the tree; prints "module mutants killed survived other"
    local module=${1%%:*} tests=${1#*:}
    local name copy tree
    name=$(basename "$module" .py)
    copy=$work/$name
    local files=("$module" tests/data)  # the module, test data and helpers, its own tests
    mapfile -t -O 2 files < <(find tests -name '*.py' ! -name 'test_*' | sort; for t in $tests; do echo "${t%%::*}"; done)
    tree=$(tar -c --exclude __pycache__ --exclude '*.egg-info' --sort=name --mtime=@0 "${files[@]}" | sha1sum)
    if [ "$(cat "$copy/.tree" 2>/dev/null)" != "$tree" ]; then  # a changed module or test starts a new session
        rm -rf "$copy" && mkdir -p "$copy"
        cp -a src tests pyproject.toml "$copy"/
        echo "$tree" > "$copy/.tree"
    fi
    cat > "$copy/cosmic-ray.toml" <<EOF
[cosmic-ray]
module-path = "$module"
timeout = 600.0
excluded-modules = []
test-command = "$PWD/$env/bin/python -m pytest -x -q -p no:cacheprovider $tests"

[cosmic-ray.distributor]
name = "local"
EOF
    (
        cd "$copy"
        export PYTHONPATH=$PWD/src PATH=$OLDPWD/$env/bin:$PATH
        if [ ! -f session.sqlite ]; then
            cosmic-ray init cosmic-ray.toml session.sqlite
            python "$OLDPWD/scripts/mutation_skip_annotations.py" session.sqlite
        fi
        cosmic-ray exec cosmic-ray.toml session.sqlite
        cr-report --show-diff --surviving-only session.sqlite > survivors.txt
        "$OLDPWD/$env/bin/python" "$OLDPWD/scripts/mutation_counts.py" "$module" session.sqlite
    )
}
export -f run_module
export work env

mkdir -p "$work"
printf '%s\n' "${chosen[@]}" | xargs -P 2 -I {} bash -c 'run_module "$@"' _ {} > "$work/rows.md"
{
    echo "| module | mutants | killed | survived | skipped (in annotations) | incompetent or timed out |"
    echo "|---|---|---|---|---|---|"
    sort "$work/rows.md"
} > "$work/summary.md"
cat "$work/summary.md"
echo "surviving mutants, with their diffs: $work/<module>/survivors.txt"
