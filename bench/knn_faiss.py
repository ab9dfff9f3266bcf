"""FAISS side of bench/bench_knn.c (KNN protocol, exact search): reads the gallery and queries
bench_knn wrote, times faiss.IndexFlatL2 (add + search, median of the repetitions) with the
same thread count, and compares its neighbours with dml's: the fraction of queries whose k ids
are identical in order, and the recall of dml's ids in FAISS's top k.

Run with Debian's python3-faiss:
  /usr/bin/python3 bench/knn_faiss.py --dir DIR --threads 2 --reps 3
"""
import argparse
import json
import os
import time

import faiss
import numpy as np


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", required=True)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=3)
    a = ap.parse_args()
    with open(os.path.join(a.dir, "dml.json")) as f:
        meta = json.load(f)
    n, nq, k, d = meta["n"], meta["nq"], meta["k"], meta["d"]
    g = np.fromfile(os.path.join(a.dir, "gallery.f32"), dtype=np.float32).reshape(n, d)
    q = np.fromfile(os.path.join(a.dir, "queries.f32"), dtype=np.float32).reshape(nq, d)
    dml_ids = np.fromfile(os.path.join(a.dir, "dml_ids.i64"), dtype=np.int64).reshape(nq, k)
    faiss.omp_set_num_threads(a.threads)
    times = []
    for _ in range(a.reps):
        t0 = time.perf_counter()
        index = faiss.IndexFlatL2(d)
        index.add(g)
        _, ids = index.search(q, k)
        times.append((time.perf_counter() - t0) * 1e3)
    ms = float(np.median(times))
    same = float(np.mean(np.all(ids == dml_ids, axis=1)))
    recall = float(np.mean([len(set(ids[i]) & set(dml_ids[i])) / k for i in range(nq)]))
    qps = 1e3 * nq / ms
    print(f"faiss FlatL2   n={n:<8} nq={nq} k={k} d={d}: {ms:9.1f} ms  {qps:10.0f} queries/s")
    print(f"dml / faiss queries per second: {meta['ms'] and ms / meta['ms']:.2f}x; "
          f"identical neighbour lists: {100 * same:.2f} %; recall of dml in faiss top {k}: "
          f"{recall:.5f}")
    with open(os.path.join(a.dir, "faiss.json"), "w") as f:
        json.dump({"ms": ms, "identical": same, "recall": recall, "faiss": faiss.__version__},
                  f)


if __name__ == "__main__":
    main()
