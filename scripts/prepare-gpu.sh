#!/usr/bin/env bash
# Builds what scripts/gpu-bench.sh runs on the lent NVIDIA machine and fills .gpu/ with it
# (see ../shared/gpu/README.md). Run here, on the development machine, from anywhere in the repo:
#   scripts/prepare-gpu.sh
# It builds target/release/cnn-gpu and the `kernels` and `step` bench binaries, copies them
# without debug info into target/gpu-stage/ (the device tool carries 64 MiB at most; with debug
# info the three binaries alone are ~150 MB), and calls ../shared/gpu/prepare.sh with them.
# Then call the device tool's `run` with carry [".gpu"], command `bash scripts/gpu-bench.sh`,
# timeout_s 300.
#   PREPARE=path/to/prepare.sh overrides where the shared prepare script is.
set -euo pipefail
root=$(git rev-parse --show-toplevel)
cd "$root"
prepare=${PREPARE:-../shared/gpu/prepare.sh}
[ -x "$prepare" ] || [ -f "$prepare" ] || { echo "error: $prepare not found" >&2; exit 2; }

cargo build --release --bin cnn-gpu
stage=target/gpu-stage
rm -rf "$stage" && mkdir -p "$stage"
# The bench binaries' names carry a hash; cargo's JSON messages name them exactly.
cargo bench --no-run --bench kernels --bench step --message-format=json >"$stage/build.json"
mapfile -t benches < <(grep -o '"executable":"[^"]*/\(kernels\|step\)-[0-9a-f]*"' "$stage/build.json" |
    cut -d'"' -f4 | sort -u)
[ "${#benches[@]}" -eq 2 ] || {
    echo "error: expected the kernels and step bench binaries, found: ${benches[*]:-none}" >&2
    exit 1
}
staged=()
for f in target/release/cnn-gpu "${benches[@]}"; do
    strip --strip-debug -o "$stage/$(basename "$f")" "$f"
    staged+=("$stage/$(basename "$f")")
done
bash "$prepare" "${staged[@]}"
ls -l .gpu/bin
