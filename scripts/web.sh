#!/usr/bin/env bash
# Builds the page (web/: the wasm32 build of the library behind wasm-bindgen) and serves it with
# the dataset on http://127.0.0.1:PORT/ (docs/web.md).
#
#   scripts/web.sh [--build-only] [--port 8000] [--data DIR]
#
# DIR holds the MNIST-family .gz files (default: $CNN_GPU_DATA_DIR, else data/mnist); it is
# served as data/mnist/. wasm-bindgen-cli is installed once, at the exact version of
# wasm-bindgen in Cargo.lock, under ~/.cache/cnn-gpu (CNN_GPU_TOOLS overrides).
set -euo pipefail
cd "$(dirname "$0")/.."

port=8000
data="${CNN_GPU_DATA_DIR:-data/mnist}"
serve=1
while [ $# -gt 0 ]; do
  case "$1" in
    --build-only) serve=0 ;;
    --port) port="$2"; shift ;;
    --data) data="$2"; shift ;;
    *) echo "usage: scripts/web.sh [--build-only] [--port N] [--data DIR]" >&2; exit 2 ;;
  esac
  shift
done

# wasm-bindgen-cli must match the wasm-bindgen crate exactly.
version=$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/version = |"/, ""); print; exit }' Cargo.lock)
tools="${CNN_GPU_TOOLS:-$HOME/.cache/cnn-gpu}/wasm-bindgen-$version"
if [ ! -x "$tools/bin/wasm-bindgen" ]; then
  echo "== installing wasm-bindgen-cli $version into $tools (once; minutes)"
  cargo install --quiet wasm-bindgen-cli --version "$version" --root "$tools"
fi
export PATH="$tools/bin:$PATH"

rustup target add wasm32-unknown-unknown >/dev/null 2>&1 || true
target="${CARGO_TARGET_DIR:-target}"
echo "== building web/ for wasm32"
# The dev profile: dependencies at opt-level 3 already (Cargo.toml), and the wasm tests share it.
cargo build --locked --target wasm32-unknown-unknown -p cnn-gpu-web
wasm-bindgen --target web --no-typescript --out-dir web/www/pkg \
  "$target/wasm32-unknown-unknown/debug/cnn_gpu_web.wasm"

mkdir -p web/www/data
if [ -d "$data" ]; then
  ln -sfn "$(cd "$data" && pwd)" web/www/data/mnist
else
  echo "note: no dataset in $data; the page will ask for files (or pass --data DIR)"
fi
if [ -d /usr/share/datasets/fashion-mnist ]; then
  ln -sfn /usr/share/datasets/fashion-mnist web/www/data/fashion-mnist
fi

[ "$serve" = 1 ] || exit 0
echo "== serving http://127.0.0.1:$port/ (Ctrl-C stops)"
cd web/www && exec python3 -m http.server "$port" --bind 127.0.0.1
