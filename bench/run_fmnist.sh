#!/usr/bin/env bash
# FMNIST-OPEN / FMNIST-CLOSED benchmark: `dml train` against the same recipes in PyTorch, same
# invocation, same thread count. Builds dml (Release) in build/bench-fmnist if needed, then for
# each recipe and each repetition runs
#   dml train --config configs/<recipe>.json        (bench/results/fmnist/<recipe>/dml.<rep>)
#   bench/fmnist/fmnist_torch.py --recipe <recipe>  (.../torch_<setting>.<rep>)
# PyTorch runs with OMP_WAIT_POLICY=PASSIVE and unset on rep 1; the faster (training images/s)
# is kept for the later reps. Then bench/fmnist/evaluate.py re-evaluates both sides' rep-1 test
# embeddings and bench/fmnist/compare.py prints the table (bench/results/fmnist.{md,json}).
# Quality comes from rep 1 (both sides are seeded); speeds and memory are medians over reps.
# Options: --recipes a,b,c (all three), --reps N (1), --epochs N (3), --threads N (2).
# Environment: DML_BENCH_BUILD_DIR (default build/bench-fmnist), DML (a dml binary to use
# instead of building one), PYTHON (default /usr/bin/python3, Debian's python3-torch).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/blas_env.sh

recipes=fmnist-open-cnn-triplet,fmnist-open-mlp-ms,fmnist-closed-cnn-triplet
reps=1
epochs=3
threads=2
while [ $# -gt 0 ]; do
  case "$1" in
    --recipes) recipes=$2; shift 2 ;;
    --reps) reps=$2; shift 2 ;;
    --epochs) epochs=$2; shift 2 ;;
    --threads) threads=$2; shift 2 ;;
    -h|--help) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "run_fmnist.sh: unknown option $1 (try --help)" >&2; exit 2 ;;
  esac
done
case "$reps" in ''|*[!0-9]*|0) echo "run_fmnist.sh: --reps needs a positive number" >&2; exit 2 ;; esac

build=${DML_BENCH_BUILD_DIR:-build/bench-fmnist}
python=${PYTHON:-/usr/bin/python3}
results=bench/results
runs=$results/fmnist
mkdir -p "$runs"

scripts/deps.sh bench ||
  { echo "run_fmnist.sh: missing packages (scripts/deps.sh bench)" >&2; exit 1; }
if ! "$python" -c 'import torch, numpy' 2>/dev/null; then
  echo "run_fmnist.sh: $python cannot import torch and numpy; install python3-torch" >&2
  exit 1
fi
if [ -n "${DML:-}" ]; then
  dml=$DML
else
  if [ ! -f "$build/CMakeCache.txt" ]; then
    cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release > "$runs/configure.log" 2>&1 ||
      { cat "$runs/configure.log"; exit 1; }
  fi
  cmake --build "$build" --target dml_cli -j2 > "$runs/build.log" 2>&1 ||
    { tail -40 "$runs/build.log"; exit 1; }
  dml=$build/dml
fi
if ! "$dml" train --help > /dev/null 2>&1; then
  echo "run_fmnist.sh: $dml has no working 'train' command" >&2
  exit 1
fi
IFS=, read -r -a recipe_list <<< "$recipes"
for r in "${recipe_list[@]}"; do
  [ -f "configs/$r.json" ] || { echo "run_fmnist.sh: no configs/$r.json" >&2; exit 1; }
done

# train images/s of a run directory
speed() { "$python" -c 'import json,sys; print(round(json.load(open(sys.argv[1]+"/metrics.json"))["train"]["images_per_s"]))' "$1"; }
elapsed() { "$python" -c 'import sys; print(f"{float(sys.argv[2]) - float(sys.argv[1]):.1f} s")' "$@"; }

run_dml() {  # dir
  local t0; t0=$(date +%s.%N)
  "$dml" train --config "configs/$r.json" --out "$1" --threads "$threads" --epochs "$epochs" \
    --no-progress > "$1.log" 2>&1 || { tail -20 "$1.log"; echo "run_fmnist.sh: dml train failed ($1.log)" >&2; exit 1; }
  echo "   dml: $(speed "$1") train images/s ($(elapsed "$t0" "$(date +%s.%N)"))"
}
run_torch() {  # policy (PASSIVE|default) dir limit_seconds|0 [extra args]; returns 3 if stopped
  local policy=$1 dir=$2 limit=$3 t0 rc=0; shift 3
  local env_cmd=(env -u OMP_WAIT_POLICY) tmo=()
  [ "$policy" = PASSIVE ] && env_cmd=(env OMP_WAIT_POLICY=PASSIVE)
  [ "$limit" != 0 ] && tmo=(timeout "$limit")
  t0=$(date +%s.%N)
  "${tmo[@]}" "${env_cmd[@]}" "$python" bench/fmnist/fmnist_torch.py --recipe "$r" --out "$dir" \
    --threads "$threads" --epochs "$epochs" --quiet "$@" > "$dir.log" 2>&1 || rc=$?
  if [ "$rc" = 124 ] && [ "$limit" != 0 ]; then
    echo "   PyTorch (OMP_WAIT_POLICY=$policy): stopped after $limit s, slower than the other setting"
    return 3
  elif [ "$rc" != 0 ]; then
    tail -20 "$dir.log"; echo "run_fmnist.sh: PyTorch failed ($dir.log)" >&2; exit 1
  fi
  echo "   PyTorch (OMP_WAIT_POLICY=$policy): $(speed "$dir") train images/s ($(elapsed "$t0" "$(date +%s.%N)"))"
}

load_before=$(cut -d' ' -f1-3 /proc/loadavg)
echo "load average before: $load_before (2 cores here; above ~0.5 the figures are noisy)"
echo "OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-unset}, threads $threads, epochs $epochs, $reps rep(s), dml: $dml"

pairs=() others=()
rm -f "$runs/raw_pixels.json"
for r in "${recipe_list[@]}"; do
  rm -rf "${runs:?}/$r"
  mkdir -p "$runs/$r"
  dml_dirs=() torch_dirs=() chosen=PASSIVE
  for rep in $(seq 1 "$reps"); do
    echo "== $r, rep $rep/$reps"
    run_dml "$runs/$r/dml.$rep"
    dml_dirs+=("$runs/$r/dml.$rep")
    if [ "$rep" = 1 ]; then
      run_torch PASSIVE "$runs/$r/torch_PASSIVE.1" 0 --raw-pixels-cache "$runs/raw_pixels.json"
      # the trial of the other setting stops once it has run 1.5x PASSIVE's time (+ 20 s):
      # it has lost by then (on a busy machine spinning OpenMP threads can take 4x longer)
      limit=$("$python" -c 'import json,sys; print(int(1.5*json.load(open(sys.argv[1]+"/metrics.json"))["wall_seconds"]) + 20)' "$runs/$r/torch_PASSIVE.1")
      if run_torch default "$runs/$r/torch_default.1" "$limit" --no-baselines; then
        a=$(speed "$runs/$r/torch_PASSIVE.1") b=$(speed "$runs/$r/torch_default.1")
        if "$python" -c 'import sys; sys.exit(0 if float(sys.argv[1]) >= float(sys.argv[2]) else 1)' "$a" "$b"; then
          chosen=PASSIVE other=default
        else
          chosen=default other=PASSIVE
        fi
        others+=(--torch-other "$runs/$r/torch_$other.1")
      else
        chosen=PASSIVE
        others+=(--note "$r=PyTorch with OMP_WAIT_POLICY unset was stopped after $limit s (1.5x the PASSIVE run's wall time + 20 s), so PASSIVE is the faster")
      fi
      echo "   PyTorch keeps OMP_WAIT_POLICY=$chosen"
    else
      run_torch "$chosen" "$runs/$r/torch_$chosen.$rep" 0 --no-baselines
    fi
    torch_dirs+=("$runs/$r/torch_$chosen.$rep")
  done
  # the common evaluator on dml's rep-1 embeddings (the PyTorch script wrote its own
  # eval_common.json: the same functions on the same saved embeddings)
  "$python" bench/fmnist/evaluate.py "${dml_dirs[0]}" | sed 's/^/   common evaluator, dml: /'
  pairs+=("$(IFS=,; echo "${dml_dirs[*]}")" "$(IFS=,; echo "${torch_dirs[*]}")")
done
load_after=$(cut -d' ' -f1-3 /proc/loadavg)

echo
"$python" bench/fmnist/compare.py "${pairs[@]}" "${others[@]}" \
  --load-before "$load_before" --load-after "$load_after" \
  --json "$results/fmnist.json" --md "$results/fmnist.md"
