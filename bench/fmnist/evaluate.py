#!/usr/bin/env python3
"""The common evaluator of the FMNIST benchmark: one implementation of the retrieval and
clustering metrics, applied to dml's and PyTorch's test embeddings alike, so that the quality
comparison does not depend on two evaluators. fmnist_torch.py computes its own figures with
these same functions; dml computes its own in C.

Metrics (Musgrave et al., "A Metric Learning Reality Check", ECCV 2020), query set = reference
set, each query left out of its own ranking, queries with no relevant item skipped:
  p_at_1      rel_1
  r_precision (sum_{i<=R} rel_i) / R, R = number of other items with the query's label
  map_at_r    (1/R) sum_{i<=R} P@i rel_i
  nmi         k-means (k = number of classes in the subset, plain k-means++ seeding, one run,
              seed 1) on the embeddings, normalised mutual information (arithmetic mean of
              the entropies) with the labels
Ranking: cosine distance 1 - q.r on L2-normalised rows (float64), or squared Euclidean for raw
pixels; ties go to the lower index, exactly (sorting on (distance, index)).

Usage:
  evaluate.py DIR [--recipe NAME] [--data DIR] [--out FILE]
reads DIR/test_embeddings.npy, DIR/test_labels.npy (and DIR/metrics.json for the recipe),
checks the labels against the test split's file, prints and writes DIR/eval_common.json
(or --out).
"""
import argparse
import gzip
import json
import os
import sys

import numpy as np

DATA = "/usr/share/datasets/fashion-mnist"
SEEN = list(range(6))
UNSEEN = list(range(6, 10))


# ---- data ------------------------------------------------------------------------------------
def read_idx(path):
    """A gzip-compressed IDX file (unsigned bytes) as a numpy array of its shape."""
    with gzip.open(path, "rb") as f:
        head = f.read(4)
        if len(head) != 4 or head[0] != 0 or head[1] != 0 or head[2] != 0x08:
            raise ValueError(f"{path}: not an IDX file of unsigned bytes")
        dims = f.read(4 * head[3])
        shape = tuple(int.from_bytes(dims[4 * i:4 * i + 4], "big") for i in range(head[3]))
        data = np.empty(shape, dtype=np.uint8)
        view, got = memoryview(data.reshape(-1)), 0
        while got < data.size:  # in pieces: a single readinto would buffer the whole file
            n = f.readinto(view[got:got + (1 << 20)])
            if n == 0:
                break
            got += n
        if got != data.size or f.read(1):
            raise ValueError(f"{path}: size does not match the shape {shape}")
    return data


def load_split(data_dir, split):
    """(images uint8 [n, 28, 28], labels int64 [n]) of 'train' or 't10k'."""
    x = read_idx(os.path.join(data_dir, f"{split}-images-idx3-ubyte.gz"))
    y = read_idx(os.path.join(data_dir, f"{split}-labels-idx1-ubyte.gz")).astype(np.int64)
    return x, y


def subsets_of(recipe):
    """{subset name: classes or None (all)} evaluated for a recipe."""
    if "open" in recipe:
        return {"unseen": UNSEEN, "seen": SEEN, "all": None}
    return {"all": None}


# ---- ranking ---------------------------------------------------------------------------------
def _prepare(x, metric):
    x = np.ascontiguousarray(x, dtype=np.float64)
    if metric == "cosine":
        n = np.linalg.norm(x, axis=1, keepdims=True)
        x = np.divide(x, n, out=np.zeros_like(x), where=n > 0)
    return x


def _keys(q, r, r_sq, metric):
    """Ranking keys (smaller = closer) of query rows q against reference rows r."""
    p = q @ r.T
    if metric == "cosine":
        return 1.0 - p
    return r_sq[None, :] - 2.0 * p  # squared Euclidean minus |q|^2: ranks alike


def _top(keys, m):
    """Indices [c, m] of the m smallest keys of each row, ordered by (key, index): exact, ties to
    the lower index, including ties at the cut."""
    c, n = keys.shape
    m = min(m, n)
    part = np.argpartition(keys, m - 1, axis=1)[:, :m]
    kpart = np.take_along_axis(keys, part, axis=1)
    thr = kpart.max(axis=1)
    # rows where more items than fit share the key at the cut: choose those by index
    ambiguous = np.flatnonzero((keys <= thr[:, None]).sum(axis=1) > m)
    order = np.lexsort((part, kpart), axis=1)
    top = np.take_along_axis(part, order, axis=1)
    for i in ambiguous:
        cand = np.flatnonzero(keys[i] <= thr[i])
        top[i] = cand[np.lexsort((cand, keys[i, cand]))][:m]
    return top


def retrieval(x, labels, metric="cosine", chunk=256):
    """P@1, R-Precision, MAP@R of self-retrieval (query = reference, self excluded)."""
    x = _prepare(x, metric)
    labels = np.asarray(labels)
    n = len(labels)
    r_sq = (x * x).sum(axis=1)
    _, inv, counts = np.unique(labels, return_inverse=True, return_counts=True)
    big_r = counts[inv] - 1
    s_p1 = s_rp = s_map = 0.0
    queries = 0
    for i0 in range(0, n, chunk):
        i1 = min(n, i0 + chunk)
        rr = big_r[i0:i1]
        rmax = int(rr.max())
        if rmax == 0:
            continue
        keys = _keys(x[i0:i1], x, r_sq, metric)
        keys[np.arange(i1 - i0), np.arange(i0, i1)] = np.inf
        top = _top(keys, rmax)
        rel = (labels[top] == labels[i0:i1, None]).astype(np.float64)
        within = np.arange(rmax)[None, :] < rr[:, None]
        rel *= within
        ok = rr > 0
        hits = np.cumsum(rel, axis=1)
        prec = hits / np.arange(1, rmax + 1)[None, :]
        rdiv = np.maximum(rr, 1)
        s_p1 += rel[ok, 0].sum()
        s_rp += (hits[np.arange(i1 - i0), np.maximum(rr - 1, 0)] / rdiv)[ok].sum()
        s_map += ((prec * rel).sum(axis=1) / rdiv)[ok].sum()
        queries += int(ok.sum())
    q = max(queries, 1)
    return {"p_at_1": s_p1 / q, "r_precision": s_rp / q, "map_at_r": s_map / q,
            "queries": queries}


def kmeans(x, k, seed=1, max_iter=300):
    """Lloyd's algorithm from plain k-means++ seeding (first centre uniform, each later one drawn
    with probability proportional to the squared distance to the nearest centre so far), until
    no assignment changes; an empty cluster takes the point farthest from its centre.
    Returns the assignment of each row."""
    rng = np.random.default_rng(seed)
    n = len(x)
    x_sq = (x * x).sum(axis=1)
    centres = np.empty((k, x.shape[1]))
    centres[0] = x[rng.integers(n)]
    d2 = np.maximum(x_sq - 2.0 * x @ centres[0] + centres[0] @ centres[0], 0.0)
    for c in range(1, k):
        total = d2.sum()
        i = rng.choice(n, p=d2 / total) if total > 0 else rng.integers(n)
        centres[c] = x[i]
        d2 = np.minimum(d2, np.maximum(x_sq - 2.0 * x @ centres[c] + centres[c] @ centres[c],
                                       0.0))
    assign = np.full(n, -1)
    for _ in range(max_iter):
        dist = x_sq[:, None] - 2.0 * x @ centres.T + (centres * centres).sum(axis=1)[None, :]
        new = dist.argmin(axis=1)
        if np.array_equal(new, assign):
            break
        assign = new
        counts = np.bincount(assign, minlength=k)
        for c in np.flatnonzero(counts == 0):
            far = int(dist[np.arange(n), assign].argmax())
            assign[far] = c
            counts = np.bincount(assign, minlength=k)
        onehot = np.zeros((k, n))
        onehot[assign, np.arange(n)] = 1.0
        centres = (onehot @ x) / counts[:, None]
    return assign


def mutual_info_nmi(a, b):
    """Normalised mutual information, arithmetic mean of the two entropies (1 when both
    labelings have a single class)."""
    _, ai = np.unique(a, return_inverse=True)
    _, bi = np.unique(b, return_inverse=True)
    cont = np.zeros((ai.max() + 1, bi.max() + 1))
    np.add.at(cont, (ai, bi), 1.0)
    p = cont / cont.sum()
    pa, pb = p.sum(axis=1), p.sum(axis=0)
    nz = p > 0
    mi = float((p[nz] * np.log(p[nz] / np.outer(pa, pb)[nz])).sum())
    ha = float(-(pa * np.log(pa)).sum())
    hb = float(-(pb * np.log(pb)).sum())
    if ha == 0.0 and hb == 0.0:
        return 1.0
    return max(mi, 0.0) / ((ha + hb) / 2.0)


def nmi(x, labels, seed=1, metric="cosine"):
    """k-means (k-means++, one run, seed) with k = number of classes, NMI with the labels."""
    x = _prepare(x, metric)
    return mutual_info_nmi(labels, kmeans(x, len(np.unique(labels)), seed))


def macro_f1(truth, pred, classes):
    f1 = []
    for c in classes:
        tp = float(((pred == c) & (truth == c)).sum())
        fp = float(((pred == c) & (truth != c)).sum())
        fn = float(((pred != c) & (truth == c)).sum())
        f1.append(2 * tp / (2 * tp + fp + fn) if tp > 0 else 0.0)
    return float(np.mean(f1))


def evaluate_subsets(x, labels, subsets, metric="cosine", seed=1):
    """{subset: {p_at_1, r_precision, map_at_r, nmi, queries}} for {name: classes or None}."""
    out = {}
    for name, classes in subsets.items():
        sel = np.ones(len(labels), bool) if classes is None else np.isin(labels, classes)
        xs, ys = x[sel], labels[sel]
        m = retrieval(xs, ys, metric)
        m["nmi"] = nmi(xs, ys, seed, metric)
        out[name] = {k: m[k] for k in ("p_at_1", "r_precision", "map_at_r", "nmi", "queries")}
    return out


# ---- kNN classification ----------------------------------------------------------------------
def knn_classify(train_x, train_y, test_x, test_y, ks=(1, 5, 10), metric="cosine", chunk=64):
    """Majority vote over the k nearest training items (ties between classes go to the class of
    the nearer neighbour); accuracy and macro-F1 per k."""
    tr = _prepare(train_x, metric)
    te = _prepare(test_x, metric)
    r_sq = (tr * tr).sum(axis=1)
    classes = np.unique(np.concatenate([train_y, test_y]))
    kmax = max(ks)
    preds = {k: np.empty(len(test_y), dtype=train_y.dtype) for k in ks}
    for i0 in range(0, len(te), chunk):
        i1 = min(len(te), i0 + chunk)
        top = _top(_keys(te[i0:i1], tr, r_sq, metric), kmax)
        lab = train_y[top]  # [c, kmax], nearest first
        onehot = lab[:, :, None] == classes[None, None, :]
        for k in ks:
            votes = onehot[:, :k].sum(axis=1)
            first = np.where(onehot[:, :k].any(axis=1), onehot[:, :k].argmax(axis=1), kmax + 1)
            best = votes == votes.max(axis=1, keepdims=True)
            preds[k][i0:i1] = classes[np.where(best, first, kmax + 2).argmin(axis=1)]
    return [{"k": k, "accuracy": float((preds[k] == test_y).mean()),
             "macro_f1": macro_f1(test_y, preds[k], classes)}
            for k in ks]


# ---- command line ----------------------------------------------------------------------------
def evaluate_dir(d, recipe=None, data=DATA):
    emb = np.load(os.path.join(d, "test_embeddings.npy"))
    lab = np.load(os.path.join(d, "test_labels.npy")).astype(np.int64)
    if recipe is None:
        with open(os.path.join(d, "metrics.json")) as f:
            recipe = json.load(f)["recipe"]
    _, truth = load_split(data, "t10k")
    problems = []
    if emb.ndim != 2 or emb.shape[0] != len(lab):
        problems.append(f"embeddings {emb.shape} for {len(lab)} labels")
    if len(lab) != len(truth) or not np.array_equal(lab, truth):
        problems.append("test_labels.npy differs from the test split's labels (file order)")
    if not np.all(np.isfinite(emb)):
        problems.append("non-finite embeddings")
    res = evaluate_subsets(emb.astype(np.float32), lab, subsets_of(recipe))
    return {"recipe": recipe, "dir": d, "shape": list(emb.shape), "problems": problems,
            "eval": res}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("dir")
    ap.add_argument("--recipe")
    ap.add_argument("--data", default=DATA)
    ap.add_argument("--out")
    a = ap.parse_args()
    r = evaluate_dir(a.dir, a.recipe, a.data)
    out = a.out or os.path.join(a.dir, "eval_common.json")
    with open(out, "w") as f:
        json.dump(r, f, indent=1)
    for p in r["problems"]:
        print(f"evaluate.py: {a.dir}: {p}", file=sys.stderr)
    for name, m in r["eval"].items():
        print(f"{a.dir} {name:6s} P@1 {m['p_at_1']:.4f}  R-Prec {m['r_precision']:.4f}  "
              f"MAP@R {m['map_at_r']:.4f}  NMI {m['nmi']:.4f}  ({m['queries']} queries)")
    return 1 if r["problems"] else 0


if __name__ == "__main__":
    sys.exit(main())
