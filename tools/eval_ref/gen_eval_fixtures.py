#!/usr/bin/env python3
"""Writes tests/fixtures/eval/eval_ref.json, the reference values of tests/test_eval_ref.c.

Clustering, classification and AUC values come from scikit-learn 1.2
(normalized_mutual_info_score, adjusted_mutual_info_score, precision_recall_fscore_support,
f1_score, confusion_matrix, roc_auc_score, KMeans). Retrieval metrics scikit-learn lacks are
computed here by plain loops over the published formulas (docs/eval.md; Musgrave et al.,
"A Metric Learning Reality Check", ECCV 2020), with nDCG@K checked against sklearn's
ndcg_score where no two distances tie (sklearn averages tied gains; dml ranks the lower index
first).

Embeddings are float32 values written exactly. Cases with ties use small integer coordinates,
whose float32 distances are exact, so the ranking (ties included) is the same in C.

Usage: /usr/bin/python3 tools/eval_ref/gen_eval_fixtures.py
"""
import json
import math
import os

import numpy as np
from sklearn.cluster import KMeans
from sklearn.metrics import (adjusted_mutual_info_score, confusion_matrix, f1_score, ndcg_score,
                             normalized_mutual_info_score, precision_recall_fscore_support,
                             roc_auc_score)

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests", "fixtures",
                   "eval")
METRICS = ["precision_at_1", "precision_at_k", "r_precision", "map_at_r", "map", "recall_at_k",
           "mrr", "ndcg_at_k"]


# ---- retrieval, plain loops ----------------------------------------------------------------
def distances(q, refs, dist):
    """Distance (smaller = closer) of query q to every reference row, in float64."""
    q = q.astype(np.float64)
    out = []
    for r in refs.astype(np.float64):
        if dist in ("euclidean", "squared_euclidean"):
            v = float(np.sum((q - r) ** 2))
        elif dist == "dot":
            v = -float(q @ r)
        else:
            nq, nr = math.sqrt(float(q @ q)), math.sqrt(float(r @ r))
            v = -float(q @ r) / (nq * nr) if nq > 0 and nr > 0 else 0.0
        out.append(v)
    return out


def label_sets(values, offsets, n):
    if offsets is None:
        return [{values[i]} for i in range(n)]
    return [set(values[offsets[i]:offsets[i + 1]]) for i in range(n)]


def jaccard(a, b):
    inter = len(a & b)
    return inter / len(a | b) if inter else 0.0


def retrieval_reference(q, qsets, r, rsets, dist, k, self_mode):
    """Per-query metrics (None for skipped queries) by the formulas, one query at a time."""
    results = []
    ndcg_sklearn = []
    for i in range(len(q)):
        d = distances(q[i], r, dist)
        cand = [j for j in range(len(r)) if not (self_mode and j == i)]
        gains = {j: jaccard(qsets[i], rsets[j]) for j in cand}
        R = sum(1 for j in cand if gains[j] > 0)
        if R == 0:
            results.append(None)
            continue
        order = sorted(cand, key=lambda j: (d[j], j))
        rel = [1 if gains[j] > 0 else 0 for j in order]
        ranks = [p + 1 for p, x in enumerate(rel) if x]
        prec_at = lambda p: sum(rel[:p]) / p
        m = {}
        m["precision_at_1"] = float(rel[0])
        m["precision_at_k"] = sum(rel[:k]) / k
        m["r_precision"] = sum(rel[:R]) / R
        m["map_at_r"] = sum(prec_at(p) for p in ranks if p <= R) / R
        m["map"] = sum(prec_at(p) for p in ranks) / R
        m["recall_at_k"] = 1.0 if ranks[0] <= k else 0.0
        m["mrr"] = 1.0 / ranks[0]
        dcg = sum(gains[order[p]] / math.log2(p + 2) for p in range(min(k, len(order))))
        ideal = sorted(gains.values(), reverse=True)
        idcg = sum(ideal[p] / math.log2(p + 2) for p in range(min(k, len(ideal))))
        m["ndcg_at_k"] = dcg / idcg
        results.append(m)
        dvals = [d[j] for j in cand]
        if len(set(dvals)) == len(dvals) and len(cand) > 1:
            s = ndcg_score([[gains[j] for j in cand]], [[-d[j] for j in cand]], k=k)
            assert abs(s - m["ndcg_at_k"]) < 1e-12, (s, m["ndcg_at_k"])
            ndcg_sklearn.append(s)
    return results, ndcg_sklearn


def summarise(results, wanted):
    rep = {"queries": 0, "skipped": 0}
    for name in METRICS:
        rep[name] = 0.0
    for res, w in zip(results, wanted):
        if not w:
            continue
        if res is None:
            rep["skipped"] += 1
            continue
        rep["queries"] += 1
        for name in METRICS:
            rep[name] += res[name]
    if rep["queries"]:
        for name in METRICS:
            rep[name] /= rep["queries"]
    return rep


def retrieval_case(name, q, qlab, r, rlab, dist, k, num_classes):
    """qlab / rlab: (values, offsets or None). r None: self-retrieval."""
    self_mode = r is None
    q = np.asarray(q, dtype=np.float32)
    rr = q if self_mode else np.asarray(r, dtype=np.float32)
    qsets = label_sets(qlab[0], qlab[1], len(q))
    rsets = qsets if self_mode else label_sets(rlab[0], rlab[1], len(rr))
    results, sk = retrieval_reference(q, qsets, rr, rsets, dist, k, self_mode)
    overall = summarise(results, [True] * len(q))
    per_class = [summarise(results, [c in s for s in qsets]) for c in range(num_classes)]
    case = {"name": name, "dist": dist, "k": k, "d": int(q.shape[1]), "nq": len(q),
            "queries": [float(v) for v in q.ravel()],
            "qlabels": {"values": list(map(int, qlab[0])),
                        "offsets": None if qlab[1] is None else list(map(int, qlab[1]))},
            "num_classes": num_classes, "overall": overall, "per_class": per_class,
            "ndcg_checked_with_sklearn": len(sk)}
    if self_mode:
        case["reference"] = None
        case["nr"] = 0
    else:
        case["reference"] = [float(v) for v in rr.ravel()]
        case["nr"] = len(rr)
        case["rlabels"] = {"values": list(map(int, rlab[0])),
                           "offsets": None if rlab[1] is None else list(map(int, rlab[1]))}
    return case


def multi(sets):
    values, offsets = [], [0]
    for s in sets:
        values.extend(s)
        offsets.append(len(values))
    return values, offsets


def retrieval_cases(rng):
    cases = []
    # self-retrieval, single label, integer points on a line and a grid: many exact ties,
    # duplicated points, a singleton class (skipped) and an empty class 4 (per_class)
    x = [[0, 0], [1, 0], [0, 0], [2, 1], [1, 0], [3, 3], [0, 1], [2, 1], [1, 1], [3, 3], [0, 2],
         [2, 2]]
    y = [0, 1, 0, 1, 2, 0, 2, 1, 0, 3, 2, 1]
    for dist in ("euclidean", "squared_euclidean", "dot"):
        cases.append(retrieval_case("self_ties_" + dist, x, (y, None), None, None, dist, 3, 6))
    # query set against a reference set, integers with ties; query class 7 has no reference
    xq = rng.integers(-2, 3, size=(9, 3))
    xr = rng.integers(-2, 3, size=(20, 3))
    yq = list(rng.integers(0, 4, size=9))
    yq[4] = 7
    yr = list(rng.integers(0, 4, size=20))
    for dist in ("squared_euclidean", "dot"):
        cases.append(retrieval_case("query_ref_ties_" + dist, xq.tolist(), (yq, None),
                                    xr.tolist(), (yr, None), dist, 4, 8))
    # random, no ties, k larger than the reference set
    xq = rng.normal(size=(6, 4))
    xr = rng.normal(size=(5, 4))
    cases.append(retrieval_case("query_ref_k_beyond_reference", xq, (list(rng.integers(0, 2, 6)), None),
                                xr, (list(rng.integers(0, 2, 5)), None), "cosine", 8, 2))
    # random self-retrieval under cosine (sklearn's ndcg_score checks every query)
    xs = rng.normal(size=(40, 5))
    cases.append(retrieval_case("self_random_cosine", xs, (list(rng.integers(0, 5, 40)), None),
                                None, None, "cosine", 5, 5))
    # multi-label self-retrieval with ties: an item without labels, a repeated label
    sets = [[0, 1], [1], [2], [0, 2, 3], [], [3], [1, 1, 4], [4], [0], [2, 3], [5], [1, 2],
            [3, 0], [4, 2]]
    xm = rng.integers(-1, 2, size=(len(sets), 3))
    cases.append(retrieval_case("multilabel_self_ties_dot", xm.tolist(), multi(sets), None, None,
                                "dot", 4, 6))
    cases.append(retrieval_case("multilabel_self_ties_euclidean", xm.tolist(), multi(sets), None,
                                None, "euclidean", 3, 6))
    # multi-label queries against a multi-label reference, random, cosine
    qsets = [list(rng.choice(6, size=rng.integers(1, 4), replace=False)) for _ in range(10)]
    rsets = [list(rng.choice(6, size=rng.integers(0, 3), replace=False)) for _ in range(30)]
    cases.append(retrieval_case("multilabel_query_ref_cosine", rng.normal(size=(10, 6)),
                                multi(qsets), rng.normal(size=(30, 6)), multi(rsets), "cosine", 5,
                                6))
    return cases


# ---- clustering ----------------------------------------------------------------------------
def mi_case(name, a, b):
    a, b = list(map(int, a)), list(map(int, b))
    return {"name": name, "a": a, "b": b,
            "nmi_arithmetic": normalized_mutual_info_score(a, b),
            "nmi_geometric": normalized_mutual_info_score(a, b, average_method="geometric"),
            "ami": adjusted_mutual_info_score(a, b)}


def mi_cases(rng):
    a = rng.integers(0, 4, 50)
    cases = [mi_case("random_4_vs_5", a, rng.integers(0, 5, 50)),
             mi_case("identical", a, a),
             mi_case("permuted_names", a, (a * 7 + 3) % 11),
             mi_case("one_cluster_vs_many", [2] * 20, rng.integers(0, 3, 20)),
             mi_case("both_one_cluster", [5] * 9, [-1] * 9),
             mi_case("all_singletons", list(range(12)), rng.integers(0, 3, 12)),
             mi_case("negative_labels", rng.integers(-3, 2, 40), rng.integers(-10, -7, 40)),
             mi_case("two_items", [0, 1], [1, 1])]
    t = rng.integers(0, 10, 300)
    noisy = np.where(rng.random(300) < 0.3, rng.integers(0, 12, 300), t)
    cases.append(mi_case("noisy_10_classes", t, noisy))
    return cases


def kmeans_cases(rng):
    # well-separated blobs: any k-means++ run reaches the same optimum
    centres = rng.normal(size=(4, 3)) * 20
    x = np.concatenate([centres[c] + rng.normal(size=(25, 3)) for c in range(4)]).astype(np.float32)
    y = np.repeat(np.arange(4), 25)
    km = KMeans(n_clusters=4, n_init=10, random_state=0).fit(x.astype(np.float64))
    return [{"name": "four_blobs", "n": len(x), "d": 3, "k": 4,
             "x": [float(v) for v in x.ravel()], "labels": list(map(int, y)),
             "inertia": float(km.inertia_),
             "nmi_arithmetic": normalized_mutual_info_score(y, km.labels_)}]


# ---- classification and AUC ----------------------------------------------------------------
def classification_case(name, truth, pred, c):
    truth, pred = list(map(int, truth)), list(map(int, pred))
    labels = list(range(c))
    p, r, f, s = precision_recall_fscore_support(truth, pred, labels=labels, zero_division=0)
    cm = confusion_matrix(truth, pred, labels=labels)
    n = len(truth)
    spec = []
    for k in range(c):
        tp = cm[k, k]
        fp = cm[:, k].sum() - tp
        fn = cm[k, :].sum() - tp
        tn = n - tp - fp - fn
        spec.append(float(tn / (tn + fp)) if tn + fp else 0.0)
    return {"name": name, "num_classes": c, "truth": truth, "pred": pred,
            "accuracy": float(np.mean(np.array(truth) == np.array(pred))),
            "macro_f1": float(f1_score(truth, pred, average="macro", zero_division=0)),
            "weighted_f1": float(f1_score(truth, pred, average="weighted", zero_division=0)),
            "precision": list(map(float, p)), "recall": list(map(float, r)),
            "f1": list(map(float, f)), "specificity": spec, "support": list(map(int, s)),
            "confusion": [int(v) for v in cm.ravel()]}


def classification_cases(rng):
    truth = rng.integers(0, 4, 60)  # class 4 never true, class 5 never true nor predicted
    pred = np.where(rng.random(60) < 0.6, truth, rng.integers(0, 5, 60))
    pred[pred == 2] = 1             # class 2 never predicted
    return [classification_case("six_classes_gaps", truth, pred, 6),
            classification_case("perfect", [0, 1, 2, 1], [0, 1, 2, 1], 3),
            classification_case("all_wrong_binary", [0, 0, 1], [1, 1, 0], 2)]


def auc_cases(rng):
    cases = []
    s = np.round(rng.random(40), 1).astype(np.float32)  # many ties
    p = (rng.random(40) < 0.4).astype(np.uint8)
    cases.append({"name": "ties", "scores": [float(v) for v in s], "positive": p.tolist(),
                  "auc": roc_auc_score(p, s)})
    s = rng.normal(size=25).astype(np.float32)
    p = (rng.random(25) < 0.5).astype(np.uint8)
    cases.append({"name": "no_ties", "scores": [float(v) for v in s], "positive": p.tolist(),
                  "auc": roc_auc_score(p, s)})
    s = np.array([1, 1, 1, 1], dtype=np.float32)
    p = np.array([1, 0, 0, 1], dtype=np.uint8)
    cases.append({"name": "all_equal", "scores": s.tolist(), "positive": p.tolist(),
                  "auc": roc_auc_score(p, s)})
    return cases


def multilabel_auc_cases(rng):
    n, c = 30, 5
    s = np.round(rng.random((n, c)), 1).astype(np.float32)
    t = (rng.random((n, c)) < 0.4).astype(np.uint8)
    t[:, 1] = 0  # no positive
    t[:, 3] = 1  # no negative
    valid = [l for l in range(c) if 0 < t[:, l].sum() < n]
    per = [roc_auc_score(t[:, l], s[:, l]) if l in valid else None for l in range(c)]
    mean = roc_auc_score(t[:, valid], s[:, valid], average="macro")
    return [{"name": "five_labels_two_degenerate", "n": n, "num_labels": c,
             "scores": [float(v) for v in s.ravel()], "targets": [int(v) for v in t.ravel()],
             "per_label": per, "mean": mean, "labels_used": len(valid)}]


def main():
    rng = np.random.default_rng(20240607)
    data = {"retrieval": retrieval_cases(rng), "mutual_info": mi_cases(rng),
            "kmeans": kmeans_cases(rng), "classification": classification_cases(rng),
            "auc": auc_cases(rng), "multilabel_auc": multilabel_auc_cases(rng)}
    os.makedirs(OUT, exist_ok=True)
    path = os.path.join(OUT, "eval_ref.json")
    with open(path + ".tmp", "w") as f:
        json.dump(data, f, separators=(",", ":"))
        f.write("\n")
    os.replace(path + ".tmp", path)


if __name__ == "__main__":
    main()
