#!/usr/bin/env bash
# Kernel timings, training-step throughput and a real MNIST training run on the lent NVIDIA
# machine, in under five minutes. Prepare .gpu/ here first (scripts/prepare-gpu.sh), then call
# the device tool's `run` with:
#   carry: [".gpu"]   command: bash scripts/gpu-bench.sh   timeout_s: 300
# Parts, each under `timeout` (seconds overridable through the environment):
#   info     cnn-gpu info                                              INFO_S    (20)
#   check    cnn-gpu check --full: every kernel, unchecked, against the CPU  CHECK_S (40)
#   plan     cnn-gpu time --plan (one step's dispatches) at batch 64, 1024  PLAN_S (20)
#   kernels  every Backend kernel on the GPU, full sizes, then the GEMM ops
#            (matmul, conv2d passes) again on each other GEMM core      KERNELS_S (100)
#   step     whole training steps at batch 64/256/1024 on the GPU, once
#            per GEMM core                                              STEP_S    (60)
#   time     cnn-gpu time (per-layer GPU timestamps) at batch 64, 1024   TIME_S    (20)
#   train    cnn-gpu train --backend gpu (5 epochs), what time is left  TOTAL_S   (240 for all)
# The benches run with the filter `gpu` (the CPU half is for the development machine) and on
# every GEMM core of GemmVariant::ALL (CNN_GPU_GEMM=NAME runs one); in the summary each core's
# lines follow the section header that names it (", gemm vec4"; the default names none).
# Logs go to $OUT/<part>.log and one screen of results to $OUT/summary.txt; $OUT is set by the
# device tool, elsewhere a temporary folder is used. Exits 1 if any part failed or timed out.
set -uo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
OUT=${OUT:-$(mktemp -d)}
mkdir -p "$OUT"
summary=$OUT/summary.txt
if [ ! -f .gpu/env.sh ]; then
    echo "error: no .gpu/env.sh here: run scripts/prepare-gpu.sh and carry .gpu" | tee "$summary" >&2
    exit 2
fi
# shellcheck disable=SC1091
source .gpu/env.sh
export RUST_BACKTRACE=1

t_start=$(date +%s)
total=${TOTAL_S:-240}
failed=0

# The newest binary of a bench in .gpu/bin (prepare.sh copies them as NAME-HASH).
bench_bin() {
    ls -t .gpu/bin/"$1"-* 2>/dev/null | head -n 1
}

# part NAME LIMIT_S COMMAND...: runs the command under timeout, its output in $OUT/NAME.log.
part() {
    local name=$1 limit=$2
    shift 2
    local left=$((total - ($(date +%s) - t_start)))
    if [ "$limit" -gt "$left" ]; then limit=$left; fi
    if [ "$limit" -lt 5 ]; then
        echo "## $name: skipped, out of time" >>"$summary"
        failed=1
        return
    fi
    local t0 rc
    t0=$(date +%s.%N)
    echo "\$ $* (timeout ${limit}s)" >"$OUT/$name.log"
    timeout --kill-after=5 "$limit" "$@" >>"$OUT/$name.log" 2>&1
    rc=$?
    local secs
    secs=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
    case $rc in
    0) echo "## $name: ok in ${secs}s" >>"$summary" ;;
    124 | 137) echo "## $name: TIMED OUT after ${secs}s (limit ${limit}s)" >>"$summary"; failed=1 ;;
    *) echo "## $name: FAILED rc=$rc after ${secs}s" >>"$summary"; failed=1 ;;
    esac
}

# no_gpu NAME: a bench that skipped its GPU half ran nothing that matters here.
no_gpu() {
    if grep -q '^gpu: skipped' "$OUT/$1.log"; then
        echo "## $1: FAILED, no GPU adapter opened" >>"$summary"
        failed=1
    fi
}

# Bench lines without the trailing adapter name (it is in the section header).
trim() {
    sed -E 's/ +\(([0-9]+) calls\)(  kernel +[0-9.]+ [^ ]+ [0-9.]+ [^ ]+)? .*/  (\1 calls)\2/; s/ +\[([0-9]+) steps in ([0-9.]+) s, .*/  [\1 steps, \2 s]/'
}

{
    echo "gpu-bench $(date -u '+%Y-%m-%d %H:%M:%S UTC') on $(hostname), commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
    if command -v nvidia-smi >/dev/null; then
        nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,memory.total --format=csv,noheader 2>&1 | head -n 2
    fi
} >"$summary"

part info "${INFO_S:-20}" cnn-gpu info
head -n 6 "$OUT/info.log" | sed 's/^/  /' >>"$summary"

# The self-test first: the kernels, built without naga's runtime checks as on every real GPU,
# meet NVIDIA's compiler here for the first time. Its last line counts the kernel checks that
# passed; the summary keeps it and the first FAIL rows (check.log has the whole table).
part check "${CHECK_S:-40}" cnn-gpu check --full
{
    grep -E '^FAIL' "$OUT/check.log" | head -n 8 | cut -c1-150
    grep -E '^check: [0-9]+ of [0-9]+ kernel checks' "$OUT/check.log" | cut -c1-150
} | sed 's/^/  /' >>"$summary"

# The step plan: every dispatch of a SimpleCNN step with its grid (plan.log); the summary keeps
# each batch's header and totals line.
part plan "${PLAN_S:-20}" sh -c 'cnn-gpu time --plan --backend gpu --batch-size 64 && cnn-gpu time --plan --backend gpu --batch-size 1024'
grep -E 'dispatches per step' "$OUT/plan.log" | cut -c1-150 | sed 's/^/  /' >>"$summary"

kernels=$(bench_bin kernels)
if [ -n "$kernels" ]; then
    part kernels "${KERNELS_S:-100}" "$kernels" --bench gpu
    no_gpu kernels
    {
        # Each GEMM core's section header, then its conv2 and square-matmul lines.
        grep -E '^== .*\[gpu\]|^conv2d_(forward|backward_input|backward_weight) +conv2 |^(matmul +square|gather_batch)' \
            "$OUT/kernels.log" | trim | cut -c1-150
        grep -E 'skipped|^kernels bench: [0-9]+ cases|panicked|^Error' "$OUT/kernels.log"
    } | sed 's/^/  /' >>"$summary"
else
    echo "## kernels: no .gpu/bin/kernels-* (run scripts/prepare-gpu.sh)" >>"$summary"
    failed=1
fi

step=$(bench_bin step)
if [ -n "$step" ]; then
    part step "${STEP_S:-60}" "$step" --bench gpu
    no_gpu step
    grep -E '^== .*\[gpu\]|^(step|plan) gpu|skipped|panicked|^Error' "$OUT/step.log" | trim | cut -c1-150 |
        sed 's/^/  /' >>"$summary"
else
    echo "## step: no .gpu/bin/step-* (run scripts/prepare-gpu.sh)" >>"$summary"
    failed=1
fi

# Per-layer times from GPU timestamps at batch 64 and 1024.
part time "${TIME_S:-20}" sh -c 'cnn-gpu time --backend gpu --batch-size 64 && cnn-gpu time --backend gpu --batch-size 1024'
grep -E 'Conv2d|total|wall' "$OUT/time.log" | cut -c1-110 | sed 's/^/  /' >>"$summary"

# Training takes whatever time is left (5 epochs of MNIST by default).
part train "$total" cnn-gpu train --backend gpu --data-dir .gpu/data/mnist
grep -vE '^\[Epoch' "$OUT/train.log" | tail -n 12 | sed 's/^/  /' >>"$summary"

echo "total $(($(date +%s) - t_start))s; logs: info.log check.log plan.log kernels.log step.log time.log train.log" >>"$summary"
cat "$summary"
exit $failed
