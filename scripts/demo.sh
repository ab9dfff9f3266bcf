#!/usr/bin/env bash
# The main job: builds dml and runs the Fashion-MNIST demo (train the reference CNN embedding
# on classes 0-5, report retrieval on the unseen classes 6-9 and on all classes).
# Installs missing Debian packages (incl. dataset-fashion-mnist) when run as root, otherwise
# says which to install. Extra arguments go to `dml demo` (see `dml demo --help`).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh demo
. scripts/blas_env.sh
build=${DML_BUILD_DIR:-build/release}
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DDML_BUILD_TESTS=OFF > /dev/null
cmake --build "$build" -j "$(nproc 2>/dev/null || echo 2)" --target dml_cli > /dev/null
exec "$build/dml" demo "$@"
