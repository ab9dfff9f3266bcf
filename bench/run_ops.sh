#!/usr/bin/env bash
# Layer, training-step and GEMM benchmark: dml against PyTorch, same invocation, same thread
# count, same inputs. Builds bench_ops and bench_gemm (Release) if needed, runs
#   bench_ops                     each layer of the reference CNN and of the MLP, the CNN step
#   bench/ops_torch.py  x2        the same in PyTorch, with OMP_WAIT_POLICY=PASSIVE and unset
#   bench_gemm                    sgemm GFLOP/s against the processor's peak
#   bench/gemm_torch.py x2        torch.matmul at the same shapes
# and prints one table (bench/ops_report.py); everything lands in bench/results/.
# The three ops runs are repeated in alternation for several rounds and the report takes the
# median over rounds, so that a burst of load elsewhere on this shared machine hits both sides.
# Options: --threads N (2), --reps N (20), --rounds N (3), --no-gemm.
# Environment: DML_BENCH_BUILD_DIR (default build/bench), PYTHON (default /usr/bin/python3,
# Debian's python3-torch).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/blas_env.sh

threads=2
reps=20
rounds=3
gemm=1
while [ $# -gt 0 ]; do
  case "$1" in
    --threads) threads=$2; shift 2 ;;
    --reps) reps=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --no-gemm) gemm=0; shift ;;
    -h|--help) sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "run_ops.sh: unknown option $1 (try --help)" >&2; exit 2 ;;
  esac
done

build=${DML_BENCH_BUILD_DIR:-build/bench}
python=${PYTHON:-/usr/bin/python3}
results=bench/results
mkdir -p "$results"

if ! "$python" -c 'import torch' 2>/dev/null; then
  echo "run_ops.sh: $python cannot import torch; install Debian's python3-torch" >&2
  exit 1
fi
if [ ! -f "$build/CMakeCache.txt" ]; then
  cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release > "$results/configure.log" 2>&1 ||
    { cat "$results/configure.log"; exit 1; }
fi
cmake --build "$build" --target bench_ops bench_gemm -j2 > "$results/build.log" 2>&1 ||
  { tail -40 "$results/build.log"; exit 1; }

load_before=$(cut -d' ' -f1-3 /proc/loadavg)
echo "load average before: $load_before (2 cores here; above ~0.5 the figures are noisy)"
echo "OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-unset}, threads $threads, $reps repetitions"

rm -f "$results"/ops_dml.*.json "$results"/ops_torch_*.json
dml_files=() passive_files=() default_files=()
for r in $(seq 1 "$rounds"); do
  echo "== round $r/$rounds: dml layers and training step"
  "$build/bench/bench_ops" --threads "$threads" --reps "$reps" --json "$results/ops_dml.$r.json"
  echo "== round $r/$rounds: PyTorch, OMP_WAIT_POLICY=PASSIVE"
  OMP_WAIT_POLICY=PASSIVE "$python" bench/ops_torch.py --threads "$threads" --reps "$reps" \
    --json "$results/ops_torch_passive.$r.json"
  echo "== round $r/$rounds: PyTorch, OMP_WAIT_POLICY unset"
  env -u OMP_WAIT_POLICY "$python" bench/ops_torch.py --threads "$threads" --reps "$reps" \
    --json "$results/ops_torch_default.$r.json"
  dml_files+=("$results/ops_dml.$r.json")
  passive_files+=("$results/ops_torch_passive.$r.json")
  default_files+=("$results/ops_torch_default.$r.json")
done

gemm_args=()
if [ "$gemm" = 1 ]; then
  echo "== sgemm (OpenBLAS, as dml calls it)"
  "$build/bench/bench_gemm" --threads "$threads" --json "$results/gemm_dml.json"
  echo "== torch.matmul, OMP_WAIT_POLICY=PASSIVE"
  OMP_WAIT_POLICY=PASSIVE "$python" bench/gemm_torch.py --shapes "$results/gemm_dml.json" \
    --threads "$threads" --json "$results/gemm_torch_passive.json"
  echo "== torch.matmul, OMP_WAIT_POLICY unset"
  env -u OMP_WAIT_POLICY "$python" bench/gemm_torch.py --shapes "$results/gemm_dml.json" \
    --threads "$threads" --json "$results/gemm_torch_default.json"
  gemm_args=(--gemm-dml "$results/gemm_dml.json"
             --gemm-torch-passive "$results/gemm_torch_passive.json"
             --gemm-torch-default "$results/gemm_torch_default.json")
fi
load_after=$(cut -d' ' -f1-3 /proc/loadavg)

echo
"$python" bench/ops_report.py --dml "${dml_files[@]}" --torch-passive "${passive_files[@]}" \
  --torch-default "${default_files[@]}" "${gemm_args[@]}" \
  --load-before "$load_before" --load-after "$load_after" --out "$results/ops.json" |
  tee "$results/ops.txt"
exit "${PIPESTATUS[0]}"
