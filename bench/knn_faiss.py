"""FAISS side of bench/bench_knn.c (KNN protocol): reads the gallery and queries bench_knn
wrote and, with the same thread count:
  - exact: times faiss.IndexFlatL2 (add + search, median of the repetitions) and compares its
    neighbours with dml's: the fraction of queries whose k ids are identical in order, and the
    recall of dml's ids in FAISS's top k;
  - approximate: for every index dml timed (dml.json "approx"), builds the same FAISS index
    (faiss.index_factory, same search parameter), times train + add once and search (median),
    and measures its recall@k against the exact neighbours, beside dml's.

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
    approx = []
    if meta.get("approx"):
        print(f"\napproximate indexes, recall@{k} against exact search, queries per second "
              f"(ratio = dml / faiss)")
        print(f"{'index':<16} {'param':<12} {'dml build s':>11} {'faiss build s':>13} "
              f"{'dml q/s':>9} {'faiss q/s':>9} {'ratio':>6} {'dml recall':>10} "
              f"{'faiss recall':>12}")
    for run in meta.get("approx", []):
        t0 = time.perf_counter()
        index = faiss.index_factory(d, run["factory"])
        # dml's backend turns off the polysemous training FAISS's factory enables for IVF-PQ
        # (it only serves the "ht" search parameter and multiplies training time); the same
        # here, so both sides build the same index.
        try:
            ivf = faiss.downcast_index(faiss.extract_index_ivf(index))
        except RuntimeError:  # not an IVF index
            ivf = faiss.downcast_index(index)
        if hasattr(ivf, "do_polysemous_training"):
            ivf.do_polysemous_training = False
        if run["param"]:
            faiss.ParameterSpace().set_index_parameter(index, run["param"], run["value"])
        if not index.is_trained:
            index.train(g)
        index.add(g)
        build_ms = (time.perf_counter() - t0) * 1e3
        times = []
        for _ in range(a.reps):
            t0 = time.perf_counter()
            _, aids = index.search(q, k)
            times.append((time.perf_counter() - t0) * 1e3)
        search_ms = float(np.median(times))
        frec = float(np.mean([len(set(aids[i]) & set(dml_ids[i])) / k for i in range(nq)]))
        param = f"{run['param']}={run['value']:g}" if run["param"] else ""
        print(f"{run['factory']:<16} {param:<12} {run['build_ms'] / 1e3:11.1f} "
              f"{build_ms / 1e3:13.1f} {1e3 * nq / run['search_ms']:9.0f} "
              f"{1e3 * nq / search_ms:9.0f} {search_ms / run['search_ms']:6.2f} "
              f"{run['recall']:10.4f} {frec:12.4f}")
        approx.append({"factory": run["factory"], "param": param, "build_ms": build_ms,
                       "search_ms": search_ms, "recall": frec})
    with open(os.path.join(a.dir, "faiss.json"), "w") as f:
        json.dump({"ms": ms, "identical": same, "recall": recall, "approx": approx,
                   "faiss": faiss.__version__}, f)


if __name__ == "__main__":
    main()
