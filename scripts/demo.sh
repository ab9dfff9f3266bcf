#!/usr/bin/env bash
# The main job: FMNIST-OPEN with the reference recipe, end to end. Builds dml, trains the
# reference CNN (triplet loss, semi-hard mining, P x K 6 x 32 batches, Adam, 3 epochs) on
# Fashion-MNIST classes 0-5, evaluates retrieval on the unseen classes 6-9 and on all classes
# beside two baselines (raw pixels, the untrained network), and writes the report folder
# (metrics in JSON and Markdown, retrieval picture, t-SNE and PCA maps, training curves, the
# model, a JSON-lines log). Installs missing Debian packages (incl. dataset-fashion-mnist) when
# run as root, otherwise says which to install.
# Usage: scripts/demo.sh [--out DIR] [any dml train flag, e.g. --epochs 5 --threads 4]
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh demo
. scripts/blas_env.sh
build=${DML_BUILD_DIR:-build/release}
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DDML_BUILD_TESTS=OFF > /dev/null
cmake --build "$build" -j "$(nproc 2>/dev/null || echo 2)" --target dml_cli > /dev/null
out=runs/fmnist-open
args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --out) out=$2; shift 2 ;;
    --help|-h) "$build/dml" train --help; exit 0 ;;
    *) args+=("$1"); shift ;;
  esac
done
"$build/dml" train --config configs/fmnist-open-cnn-triplet.json --out "$out" ${args[@]+"${args[@]}"}
echo
echo "The report is $out/report.md: open it in a Markdown viewer to see the pictures"
echo "($out/retrieval.png, $out/map_tsne.png, $out/map_pca.png, $out/loss.svg, $out/validation.svg)."
