#!/usr/bin/env bash
# The whole test suite, as CI runs it:
#   1. release build with gcc (-Werror) and every CTest suite;
#   1b. the same without -march=native (the kernels' fallbacks without AVX-512 and FMA) and
#       without FAISS;
#   2. the same under clang (-Werror), build and suites;
#   3. an AddressSanitizer + UndefinedBehaviorSanitizer build and every suite;
#   4. libFuzzer targets for every file parser, each run for a short while;
#   5. `cmake --install` into a scratch prefix and the examples built against the installed
#      library through pkg-config.
# Stages 1, 2, 3 and 4 include the FAISS backend (approximate search) when libfaiss-dev and a
# C++ compiler are installed; stage 1b builds without it (-DDML_FAISS=OFF), so both are tested.
# Installs missing Debian packages when run as root, otherwise says which to install.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
scripts/deps.sh test
. scripts/blas_env.sh

jobs=$(nproc 2>/dev/null || echo 2)
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
out=${DML_TEST_BUILD_DIR:-$root/build/test}
mkdir -p "$out"

step() { printf '\n== %s ==\n' "$*"; }

configure_build_test() {
  local dir=$1 cc=$2
  shift 2
  CC=$cc cmake -S "$root" -B "$dir" -DDML_BUILD_BENCH=ON "$@" > "$dir.configure.log" 2>&1 ||
    { cat "$dir.configure.log"; return 1; }
  cmake --build "$dir" -j "$jobs"
  (cd "$dir" && ctest --output-on-failure -j 1)
}

step "gcc release build and tests"
mkdir -p "$out/gcc" && configure_build_test "$out/gcc" gcc -DCMAKE_BUILD_TYPE=Release

step "portable build (no -march=native: the code paths without AVX-512 or FMA; no FAISS) and tests"
mkdir -p "$out/portable" && configure_build_test "$out/portable" gcc -DCMAKE_BUILD_TYPE=Release \
  -DDML_NATIVE=OFF -DDML_FAISS=OFF -DDML_BUILD_BENCH=OFF -DDML_BUILD_EXAMPLES=OFF

step "clang release build and tests"
mkdir -p "$out/clang" && configure_build_test "$out/clang" clang -DCMAKE_BUILD_TYPE=Release

step "AddressSanitizer + UndefinedBehaviorSanitizer build and tests"
mkdir -p "$out/asan"
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
export LSAN_OPTIONS=${LSAN_OPTIONS:-suppressions=$root/tests/lsan.supp}
# FAISS stays on here: libfaiss.a is not instrumented, so ASan checks dml's side of the calls
# (the wrapper's buffers and exception paths) while FAISS itself runs unchecked.
configure_build_test "$out/asan" gcc -DCMAKE_BUILD_TYPE=Debug -DDML_SANITIZE=ON \
  -DDML_BUILD_BENCH=OFF -DCMAKE_C_FLAGS_DEBUG="-O1 -g" -DCMAKE_CXX_FLAGS_DEBUG="-O1 -g"

step "fuzz the file parsers (${DML_FUZZ_SECONDS:-15} s each)"
fuzz="$out/fuzz"
mkdir -p "$fuzz"
CC=clang cmake -S "$root" -B "$fuzz" -DDML_FUZZ=ON -DCMAKE_BUILD_TYPE=Debug \
  -DCMAKE_C_FLAGS_DEBUG="-O1 -g" -DCMAKE_CXX_FLAGS_DEBUG="-O1 -g" -DDML_BUILD_TESTS=OFF \
  -DDML_BUILD_BENCH=OFF -DDML_BUILD_EXAMPLES=OFF > "$fuzz.configure.log" 2>&1 ||
  { cat "$fuzz.configure.log"; exit 1; }
cmake --build "$fuzz" -j "$jobs"
corpus="$fuzz/corpus"
rm -rf "$corpus" && mkdir -p "$corpus"/{safetensors,model_text,idx,checkpoint,loss_spec,npy,faiss_blob,gallery,csv,train_config}
targets=(safetensors model_text idx checkpoint loss_spec npy gallery csv train_config)
if [ -x "$fuzz/tests/fuzz/fuzz_faiss_blob" ]; then
  # the FAISS blob target writes its own seeds, made by the FAISS it links
  (cd "$fuzz" && DML_FUZZ_FAISS_SEEDS="$corpus/faiss_blob" "$fuzz/tests/fuzz/fuzz_faiss_blob" \
    -runs=0 > "$fuzz/fuzz_faiss_blob.seed.log" 2>&1) ||
    { cat "$fuzz/fuzz_faiss_blob.seed.log"; echo "fuzz_faiss_blob could not write its seeds" >&2; exit 1; }
  targets+=(faiss_blob)
fi
cp tests/fixtures/*.safetensors "$corpus/safetensors/"
cp models/*.txt tests/fixtures/*.txt "$corpus/model_text/"
for f in tests/fixtures/fmnist64-*.gz; do cp "$f" "$corpus/idx/"; done
cp tests/fixtures/npy/*.npy "$corpus/npy/"
cp configs/*.json "$corpus/train_config/"
cp tests/fixtures/data/csv/*.csv "$corpus/csv/"
# galleries made by the gcc build's dml, without their trailing checksum (the target adds it)
for spec in "Flat euclidean" "Flat cosine" "Flat dot"; do
  read -r factory distance <<< "$spec"
  gfile="$corpus/gallery/$factory-$distance.dmlg"
  if "$out/gcc/dml" index build --emb tests/fixtures/cli/new_class.npy \
      --labels tests/fixtures/cli/new_class_labels.npy --factory "$factory" --distance "$distance" \
      --out "$gfile.full" > /dev/null 2>&1; then
    head -c -4 "$gfile.full" > "$gfile"
  fi
  rm -f "$gfile.full"
done
# every spec the loss fixtures use, one per file
grep -oh '"spec":"[^"]*"' tests/fixtures/losses_*.json | sed 's/^"spec":"//; s/"$//' | sort -u |
  awk -v d="$corpus/loss_spec" '{ f = sprintf("%s/spec%04d", d, NR); printf "%s", $0 > f; close(f) }'
for t in "${targets[@]}"; do
  budget=(-max_total_time="${DML_FUZZ_SECONDS:-15}")
  # The FAISS blob target reaches FAISS's own index reader, which trusts the sizes it reads: a
  # mutation of one can make it allocate beyond the fuzzer's limit, a finding about FAISS
  # (whose files dml documents as trusted input), not about dml. A fixed seed and run count
  # keep this stage reproducible; longer runs by hand explore further.
  [ "$t" = faiss_blob ] && budget=(-seed=1 -runs="${DML_FUZZ_FAISS_RUNS:-600000}")
  (cd "$fuzz" && "$fuzz/tests/fuzz/fuzz_$t" "${budget[@]}" \
    -rss_limit_mb=4096 "$corpus/$t" > "$fuzz/fuzz_$t.log" 2>&1) ||
    { tail -40 "$fuzz/fuzz_$t.log"; echo "fuzz_$t found a failure" >&2; exit 1; }
  echo "fuzz_$t: $(grep -o 'Done [0-9]* runs' "$fuzz/fuzz_$t.log" | tail -1), no failure"
done

step "install and build the examples against the installed library"
prefix="$out/prefix"
rm -rf "$prefix"
cmake --install "$out/gcc" --prefix "$prefix" > "$out/install.log"
export PKG_CONFIG_PATH="$prefix/lib/pkgconfig:$prefix/lib/x86_64-linux-gnu/pkgconfig${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}"
mkdir -p "$out/examples"
n_examples=0
for src in examples/*.c; do
  exe="$out/examples/$(basename "${src%.c}")"
  # shellcheck disable=SC2046
  gcc -std=c11 -Wall -Wextra -Werror -o "$exe" "$src" $(pkg-config --cflags --libs dml)
  n_examples=$((n_examples + 1))
done
libdir=$(pkg-config --variable=libdir dml)
for exe in "$out"/examples/*; do
  [ -x "$exe" ] || continue
  name=$(basename "$exe")
  if [ -f "examples/$name.args" ]; then
    # shellcheck disable=SC2046
    (cd "$root" && LD_LIBRARY_PATH="$libdir" "$exe" $(cat "examples/$name.args")) > "$out/examples/$name.log"
  else
    (cd "$root" && LD_LIBRARY_PATH="$libdir" "$exe") > "$out/examples/$name.log"
  fi
  echo "example $name: ok"
done
echo "$n_examples examples built against the installed library and run"
printf '\nall test stages passed\n'
