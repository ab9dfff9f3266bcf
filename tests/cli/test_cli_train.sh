#!/usr/bin/env bash
# `dml train` end to end on 600 real Fashion-MNIST training images and 400 test images
# (tests/fixtures/train): an open-set run writes the whole report folder; a closed-set run adds
# kNN classification; config errors name the offending key; Ctrl-C saves the position and
# --resume finishes the run with the same weights as an uninterrupted run; an image-folder run
# reads the data layer's fixture.
# Usage: test_cli_train.sh DML_BINARY TESTS_DIR SCRATCH_DIR
set -uo pipefail
dml=$1
tests=$2
tmp=$3/cli_train
rm -rf "$tmp" && mkdir -p "$tmp"
failures=0
fx=$tests/fixtures/train
models=$tests/../models

fail() {
  echo "FAIL: $*"
  failures=$((failures + 1))
}
ok() {
  if ! "$@" > "$tmp/out" 2>&1; then
    fail "expected success: $*"
    cat "$tmp/out"
  fi
}
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

cat > "$tmp/open.json" <<JSON
{
  "name": "fixture-open",
  "data": {"format": "idx",
           "train": "$fx/fmnist600-images-idx3-ubyte.gz",
           "train_labels": "$fx/fmnist600-labels-idx1-ubyte.gz",
           "test": "$fx/fmnist400-test-images-idx3-ubyte.gz",
           "test_labels": "$fx/fmnist400-test-labels-idx1-ubyte.gz",
           "mean": [0.2860], "std": [0.3530]},
  "split": {"kind": "classes", "test_classes": [6, 7, 8, 9]},
  "validation": {"source": "holdout", "fraction": 0.2},
  "model": "$models/fmnist_cnn.txt",
  "loss": "triplet margin=0.2 miner=semihard",
  "sampler": {"kind": "pk", "p": 6, "k": 16},
  "epochs": 3,
  "eval": {"map_points": 300, "grid_queries": 4}
}
JSON

# ---- open set: the whole report folder ----
ok "$dml" train --config "$tmp/open.json" --out "$tmp/open" --no-progress
has "unseen"
has "report: $tmp/open/report.md"
for f in metrics.json report.md config.json log.jsonl model.json model.safetensors \
         last.json last.safetensors best.json test_embeddings.npy test_labels.npy \
         retrieval.png map_pca.png map_tsne.png loss.svg validation.svg; do
  [ -s "$tmp/open/$f" ] || fail "open-set run did not write $f"
done
grep -q '"unseen"' "$tmp/open/metrics.json" || fail "metrics.json lacks the unseen classes"
grep -q '"raw_pixels"' "$tmp/open/metrics.json" || fail "metrics.json lacks the baselines"
# one log line per step and per epoch: 360 training images - 20 % held out = 288 -> 3 x 3 steps
steps=$(grep -c '"event": "step"' "$tmp/open/log.jsonl")
epochs=$(grep -c '"event": "epoch"' "$tmp/open/log.jsonl")
[ "$epochs" -eq 3 ] || fail "log.jsonl has $epochs epoch lines, expected 3"
[ "$steps" -ge 3 ] || fail "log.jsonl has $steps step lines"
# the evaluated model embeds with dml embed (normalisation from its metadata)
ok "$dml" embed --checkpoint "$tmp/open/model" --images "$fx/fmnist400-test-images-idx3-ubyte.gz" \
   --labels "$fx/fmnist400-test-labels-idx1-ubyte.gz" --out "$tmp/emb.npy"
cmp -s <(tail -c 204800 "$tmp/emb.npy") <(tail -c 204800 "$tmp/open/test_embeddings.npy") ||
  fail "dml embed of the saved model differs from the run's test embeddings"

# ---- closed set with kNN classification, flags overriding the file ----
ok "$dml" train --config "$tmp/open.json" --out "$tmp/closed" --split.kind given \
   --validation.source none --epochs 1 --eval.pictures false --eval.knn 1,5 --progress lines
has "kNN classification"
has "k = 5"
grep -q '"knn"' "$tmp/closed/metrics.json" || fail "closed-set metrics.json lacks knn"
[ -e "$tmp/closed/retrieval.png" ] && fail "eval.pictures false still drew pictures"

# ---- config errors name the key ----
rejects 2 "optimizer.lrr" "$dml" train --config "$tmp/open.json" --optimizer.lrr 0.1
echo '{"optimizer": {"lr": "fast"}}' > "$tmp/bad_type.json"
rejects 1 "'optimizer.lr'" "$dml" train --config "$tmp/bad_type.json"
echo '{"sampler": {"kind": "pk", "pp": 6}}' > "$tmp/bad_key.json"
rejects 1 "sampler.pp" "$dml" train --config "$tmp/bad_key.json"
printf '{"epochs": 3,\n "seed": }\n' > "$tmp/bad_json.json"
rejects 1 "bad_json.json:2" "$dml" train --config "$tmp/bad_json.json"
rejects 1 "no-such.json" "$dml" train --config "$tmp/no-such.json"
rejects 2 "no training data" "$dml" train --out "$tmp/none"
rejects 1 "unknown loss\|tripletz" "$dml" train --config "$tmp/open.json" --loss tripletz --out "$tmp/e1"
rejects 1 "784" "$dml" train --config "$tmp/open.json" --model_text "input 10
linear out=4" --out "$tmp/e2"
rejects 1 "fmnist600-missing" "$dml" train --config "$tmp/open.json" \
   --data.train "$fx/fmnist600-missing.gz" --out "$tmp/e3"
"$dml" train --keys > "$tmp/out" 2>&1 || fail "dml train --keys"
has "optimizer.lr"
has "split.test_classes"

# ---- Ctrl-C saves the position; --resume ends where an uninterrupted run ends ----
long=(--config "$tmp/open.json" --epochs 40 --validation.source none --eval.pictures false
      --eval.baselines false --no-progress)
ok "$dml" train "${long[@]}" --out "$tmp/straight"
"$dml" train "${long[@]}" --out "$tmp/int" > "$tmp/int.out" 2>&1 &
pid=$!
for _ in $(seq 1 200); do
  [ -s "$tmp/int/log.jsonl" ] && break
  sleep 0.05
done
kill -INT "$pid"
wait "$pid"
rc=$?
[ "$rc" -eq 130 ] || { fail "Ctrl-C: exit $rc, expected 130"; cat "$tmp/int.out"; }
grep -q "resume" "$tmp/int.out" || { fail "Ctrl-C: no resume hint"; cat "$tmp/int.out"; }
[ -s "$tmp/int/last.json" ] || fail "Ctrl-C: no checkpoint written"
ok "$dml" train "${long[@]}" --out "$tmp/int" --resume "$tmp/int/last"
has "resuming at epoch"
cmp -s "$tmp/straight/model.safetensors" "$tmp/int/model.safetensors" ||
  fail "interrupted + resumed run ended with other weights than the uninterrupted run"

# ---- an image folder (the data layer's fixture) trains too ----
imgs=$tests/fixtures/data/images
if [ -d "$imgs" ]; then
  ok "$dml" train --data.format images --data.train "$imgs" --data.channels 1 \
     --data.height 16 --data.width 16 --model_text "input 1 16 16
flatten
linear out=8
l2norm" --split.kind given --validation.source none --sampler.kind shuffle --sampler.batch 2 \
     --epochs 1 --out "$tmp/folder" --no-progress
fi

if [ "$failures" -gt 0 ]; then
  echo "$failures failure(s)"
  exit 1
fi
echo "cli_train: all checks passed"
