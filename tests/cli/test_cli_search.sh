#!/usr/bin/env bash
# The search, matching and evaluation commands end to end on small clustered embeddings
# (tests/fixtures/cli, written by tools/gen_cli_fixtures.py): build a gallery, search it, add a
# class it has never seen, remove items, calibrate a rejection threshold, classify, evaluate;
# and the errors a user meets (damaged gallery, wrong shapes, wrong dtypes, missing files).
# Usage: test_cli_search.sh DML_BINARY FIXTURE_DIR SCRATCH_DIR
set -uo pipefail
dml=$1
fx=$2
tmp=$3/cli_search
rm -rf "$tmp" && mkdir -p "$tmp"
failures=0

fail() {
  echo "FAIL: $*"
  failures=$((failures + 1))
}
# ok CMD...: must exit 0; its output is in $tmp/out.
ok() {
  if ! "$@" > "$tmp/out" 2>&1; then
    fail "expected success: $*"
    cat "$tmp/out"
  fi
}
# rejects STATUS PATTERN CMD...: must exit with STATUS and print PATTERN.
rejects() {
  local want=$1 pattern=$2
  shift 2
  "$@" > "$tmp/out" 2>&1
  local got=$?
  if [ "$got" -ne "$want" ] || ! grep -q -- "$pattern" "$tmp/out"; then
    fail "expected exit $want and '$pattern' from: $* (exit $got)"
    cat "$tmp/out"
  fi
}
has() {
  grep -q -- "$1" "$tmp/out" || { fail "output lacks '$1'"; cat "$tmp/out"; }
}

g=$tmp/g.dmlg
ok "$dml" index build --emb "$fx/gallery.npy" --labels "$fx/gallery_labels.npy" --out "$g"
has "300 items of dimension 8, distance cosine, index Flat"
ok "$dml" index search --index "$g" --queries "$fx/queries.npy" --k 5 \
  --out-ids "$tmp/ids.npy" --out-dists "$tmp/d.npy"
# 200 x 5 int64 after the 128-byte header.
[ "$(stat -c %s "$tmp/ids.npy")" -eq $((128 + 200 * 5 * 8)) ] || fail "ids.npy has the wrong size"
[ "$(stat -c %s "$tmp/d.npy")" -eq $((128 + 200 * 5 * 4)) ] || fail "d.npy has the wrong size"

ok "$dml" calibrate --index "$g" --emb "$fx/queries.npy" --labels "$fx/query_labels.npy" \
  --precision 0.95 --out "$tmp/cal.json"
has "unknown"
grep -q '"format":[[:space:]]*"dml-calibration"' "$tmp/cal.json" || fail "cal.json format"
grep -q '"target_met":[[:space:]]*true' "$tmp/cal.json" || fail "precision 0.95 not met"
ok "$dml" classify --index "$g" --calibration "$tmp/cal.json" --queries "$fx/queries.npy" \
  --labels "$fx/query_labels.npy" --out "$tmp/pred.npy" --json "$tmp/report.json"
has "AUROC known/unknown"
[ "$(stat -c %s "$tmp/pred.npy")" -eq $((128 + 200 * 4)) ] || fail "pred.npy has the wrong size"
ok "$dml" calibrate --index "$g" --emb "$fx/queries.npy" --labels "$fx/query_labels.npy" \
  --best-f1 --rule majority --k 5 --out "$tmp/cal_f1.json"
grep -q '"rule":[[:space:]]*"majority"' "$tmp/cal_f1.json" || fail "majority rule not kept"

# Open set: class 4 joins the gallery without retraining; its queries are then known.
ok "$dml" index add --index "$g" --emb "$fx/new_class.npy" --labels "$fx/new_class_labels.npy"
has "350 items"
ok "$dml" classify --index "$g" --calibration "$tmp/cal.json" --queries "$fx/queries.npy" \
  --labels "$fx/query_labels.npy"
has "(200 of classes in the gallery, 0 unknown)"
rejects 1 "already in the gallery" "$dml" index add --index "$g" --emb "$fx/new_class.npy" \
  --ids "$fx/existing_ids.npy"
ok "$dml" index remove --index "$g" --id 0,1,2,100000
has "removed 3 of 4"
has "347 items"
ok "$dml" index info --index "$g"
has "347 items"

ok "$dml" eval --emb "$fx/queries.npy" --labels "$fx/query_labels.npy" --per-class \
  --json "$tmp/eval.json"
has "MAP@R"
has "NMI"
has "confusion matrix"
for key in precision_at_1 map_at_r ndcg_at_k nmi ami macro_f1 confusion; do
  grep -q "\"$key\"" "$tmp/eval.json" || fail "eval.json lacks $key"
done
ok "$dml" eval --emb "$fx/queries.npy" --labels "$fx/query_labels.npy" --ref "$fx/gallery.npy" \
  --ref-labels "$fx/gallery_labels.npy" --knn 3 --vote distance
has "queries without a relevant item skipped"
ok "$dml" eval --emb "$fx/gallery.npy" --labels "$fx/multi_hot.npy" --k 5
has "multi-label"

# dml embed: a checkpoint from a tiny demo run (64 Fashion-MNIST images) over IDX images.
data=$tmp/fmnist
mkdir -p "$data"
fixtures=$(cd "$fx/.." && pwd)
for split in train t10k; do
  ln -sf "$fixtures/fmnist64-images-idx3-ubyte.gz" "$data/$split-images-idx3-ubyte.gz"
  ln -sf "$fixtures/fmnist64-labels-idx1-ubyte.gz" "$data/$split-labels-idx1-ubyte.gz"
done
ok "$dml" demo --data "$data" --epochs 1 --batch 16 --save "$tmp/cnn"
[ -f "$tmp/cnn.json" ] && [ -f "$tmp/cnn.safetensors" ] || fail "demo --save wrote no checkpoint"
ok "$dml" embed --checkpoint "$tmp/cnn" --images "$data/t10k-images-idx3-ubyte.gz" \
  --labels "$data/t10k-labels-idx1-ubyte.gz" --out "$tmp/emb.npy" --labels-out "$tmp/emb_y.npy"
has "wrote 64 embeddings of dimension 128"
[ "$(stat -c %s "$tmp/emb.npy")" -eq $((128 + 64 * 128 * 4)) ] || fail "emb.npy has the wrong size"
ok "$dml" eval --emb "$tmp/emb.npy" --labels "$tmp/emb_y.npy" --knn 3
has "P@1"
rejects 1 "values per item" "$dml" embed --checkpoint "$tmp/cnn" --input "$fx/gallery.npy" \
  --out "$tmp/bad.npy"
rejects 1 "checkpoint" "$dml" embed --checkpoint "$tmp/none" --input "$fx/gallery.npy" \
  --out "$tmp/bad.npy"

# Errors a user can act on, never a crash.
cp "$g" "$tmp/damaged.dmlg"
printf '\x55' | dd of="$tmp/damaged.dmlg" bs=1 seek=200 conv=notrunc status=none
rejects 1 "checksum" "$dml" index info --index "$tmp/damaged.dmlg"
head -c 100 "$g" > "$tmp/short.dmlg"
rejects 1 "truncated" "$dml" index search --index "$tmp/short.dmlg" --queries "$fx/queries.npy"
rejects 1 "No such file" "$dml" index info --index "$tmp/none.dmlg"
rejects 1 "2-D float32" "$dml" index build --emb "$fx/bad_3d.npy" --out "$tmp/x.dmlg"
rejects 1 "1-D integer array" "$dml" index build --emb "$fx/gallery.npy" \
  --labels "$fx/bad_float_labels.npy" --out "$tmp/x.dmlg"
rejects 1 "labels for" "$dml" index build --emb "$fx/queries.npy" \
  --labels "$fx/gallery_labels.npy" --out "$tmp/x.dmlg"
[ -e "$tmp/x.dmlg" ] && fail "a failed build left a gallery file"
rejects 2 "unknown distance" "$dml" index build --emb "$fx/gallery.npy" --distance manhattan \
  --out "$tmp/x.dmlg"
rejects 1 "dimensions" "$dml" index search --index "$g" --queries "$fx/multi_hot.npy"
rejects 2 "required" "$dml" calibrate --index "$g" --emb "$fx/queries.npy"
rejects 1 "not a calibration file" "$dml" classify --index "$g" --calibration "$tmp/eval.json" \
  --queries "$fx/queries.npy"
ls "$tmp"/*.tmp.* > /dev/null 2>&1 && fail "temporary files left behind"

if [ "$failures" -ne 0 ]; then
  echo "$failures check(s) failed"
  exit 1
fi
echo "all command-line search checks passed"
