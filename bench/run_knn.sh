#!/usr/bin/env bash
# KNN benchmark: dml against FAISS (Debian's python3-faiss) on the same gallery and queries
# (random normal 128-d by default, 10,000 queries, k = 10), same thread count, one invocation.
# Exact: dml_knn_search against faiss.IndexFlatL2 (queries per second, ratio, identical lists).
# Approximate (dml built with FAISS): dml galleries against FAISS's own indexes with the same
# factory strings and parameters (build time, queries per second, recall@10 against exact).
# Options: --threads N (2), --reps N (3), --n N (60000; the protocol's second size is
# 1000000), --nq N (10000), --approx "F[:p=v];..." (default HNSW32, IVF1024,Flat and
# IVF1024,PQ16; "" skips), --gallery G.npy --queries Q.npy (real embeddings, e.g. from dml
# embed), --fmnist (real embeddings made here: `dml demo --save` trains the reference CNN,
# `dml embed` embeds the 60,000 training images as the gallery and the 10,000 test images as
# the queries). Data and results land in bench/results/knn/.
# Environment: DML_BENCH_BUILD_DIR (default build/bench), PYTHON (default /usr/bin/python3).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/blas_env.sh

threads=2
reps=3
n=60000
nq=10000
approx="HNSW32:efSearch=64;IVF1024,Flat:nprobe=16;IVF1024,PQ16:nprobe=16"
data=()
fmnist=0
while [ $# -gt 0 ]; do
  case "$1" in
    --threads) threads=$2; shift 2 ;;
    --reps) reps=$2; shift 2 ;;
    --n) n=$2; shift 2 ;;
    --nq) nq=$2; shift 2 ;;
    --approx) approx=$2; shift 2 ;;
    --gallery) data+=(--gallery "$2"); shift 2 ;;
    --queries) data+=(--queries "$2"); shift 2 ;;
    --fmnist) fmnist=1; shift ;;
    -h|--help) sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "run_knn.sh: unknown option $1 (try --help)" >&2; exit 2 ;;
  esac
done

build=${DML_BENCH_BUILD_DIR:-build/bench}
python=${PYTHON:-/usr/bin/python3}
results=bench/results/knn
mkdir -p "$results"
if ! "$python" -c 'import faiss' 2>/dev/null; then
  echo "run_knn.sh: $python cannot import faiss; install Debian's python3-faiss" >&2
  exit 1
fi
if [ ! -f "$build/CMakeCache.txt" ]; then
  cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release > "$results/configure.log" 2>&1 ||
    { cat "$results/configure.log"; exit 1; }
fi
cmake --build "$build" --target bench_knn -j2 > "$results/build.log" 2>&1 ||
  { tail -40 "$results/build.log"; exit 1; }
if [ "$fmnist" -eq 1 ]; then
  cmake --build "$build" --target dml_cli -j2 > "$results/build.log" 2>&1 ||
    { tail -40 "$results/build.log"; exit 1; }
  fm=/usr/share/datasets/fashion-mnist
  echo "training the reference CNN (dml demo --save) and embedding Fashion-MNIST..."
  "$build/dml" demo --threads "$threads" --save "$results/cnn" > "$results/demo.log"
  "$build/dml" embed --checkpoint "$results/cnn" --images "$fm/train-images-idx3-ubyte.gz" \
    --labels "$fm/train-labels-idx1-ubyte.gz" --out "$results/fmnist_train.npy"
  "$build/dml" embed --checkpoint "$results/cnn" --images "$fm/t10k-images-idx3-ubyte.gz" \
    --labels "$fm/t10k-labels-idx1-ubyte.gz" --out "$results/fmnist_test.npy"
  data=(--gallery "$results/fmnist_train.npy" --queries "$results/fmnist_test.npy")
fi
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg) (2 cores)"
echo "OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-unset}, threads $threads, median of $reps"
"$build/bench/bench_knn" --threads "$threads" --reps "$reps" --n "$n" --nq "$nq" --k 10 \
  --approx "$approx" "${data[@]}" --out "$results"
"$python" bench/knn_faiss.py --dir "$results" --threads "$threads" --reps "$reps"
rm -f "$results/gallery.f32" "$results/queries.f32"
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
