#!/usr/bin/env bash
# LOSS benchmark: every dml loss with its default miner against the same loss in PyTorch, same
# invocation, same inputs, same thread count (BENCHMARKS.md, LOSS protocol: random
# L2-normalised embeddings, D = 128, 16 classes, B = 256 and 1024, forward + backward).
# Builds bench_losses (Release) if needed, runs it, then bench/losses_torch.py twice (with
# OMP_WAIT_POLICY=PASSIVE and unset; the faster is kept per loss) and prints the table of
# ratios (bench/losses_report.py). Files land in bench/results/losses*.
# Options: --threads N (2), --reps N (20), --batches 256,1024, --only NAME.
# Environment: DML_BENCH_BUILD_DIR (default build/bench), PYTHON (default /usr/bin/python3).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/blas_env.sh

threads=2
reps=20
batches=256,1024
only=()
while [ $# -gt 0 ]; do
  case "$1" in
    --threads) threads=$2; shift 2 ;;
    --reps) reps=$2; shift 2 ;;
    --batches) batches=$2; shift 2 ;;
    --only) only=(--only "$2"); shift 2 ;;
    -h|--help) sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "run_losses.sh: unknown option $1 (try --help)" >&2; exit 2 ;;
  esac
done

build=${DML_BENCH_BUILD_DIR:-build/bench}
python=${PYTHON:-/usr/bin/python3}
results=bench/results
mkdir -p "$results"
if ! "$python" -c 'import torch' 2>/dev/null; then
  echo "run_losses.sh: $python cannot import torch; install Debian's python3-torch" >&2
  exit 1
fi
if [ ! -f "$build/CMakeCache.txt" ]; then
  cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release > "$results/configure.log" 2>&1 ||
    { cat "$results/configure.log"; exit 1; }
fi
cmake --build "$build" --target bench_losses -j2 > "$results/build.log" 2>&1 ||
  { tail -40 "$results/build.log"; exit 1; }

echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg) (2 cores; above ~0.5 the figures are noisy)"
echo "OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-unset}, threads $threads, $reps repetitions"
echo "== dml"
"$build/bench/bench_losses" --threads "$threads" --reps "$reps" --batches "$batches" \
  "${only[@]}" --json "$results/losses_dml.json"
echo "== PyTorch, OMP_WAIT_POLICY=PASSIVE"
OMP_WAIT_POLICY=PASSIVE "$python" bench/losses_torch.py --dml "$results/losses_dml.json" \
  --threads "$threads" --reps "$reps" --json "$results/losses_torch_passive.json"
echo "== PyTorch, OMP_WAIT_POLICY unset"
env -u OMP_WAIT_POLICY "$python" bench/losses_torch.py --dml "$results/losses_dml.json" \
  --threads "$threads" --reps "$reps" --json "$results/losses_torch_default.json"
echo
"$python" bench/losses_report.py --dml "$results/losses_dml.json" \
  --torch "$results/losses_torch_passive.json" "$results/losses_torch_default.json" \
  --out "$results/losses.json" | tee "$results/losses.txt"
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
