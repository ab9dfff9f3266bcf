#!/usr/bin/env python3
"""Writes tests/fixtures/viz/viz_ref.json, the reference values of tests/test_viz.c.

PCA: points with known principal axes (independent normals of decreasing spread, rotated by a
random orthogonal matrix and shifted); the reference projection and explained-variance
fractions come from numpy's eigh of the float64 covariance of the float32 points, with dml's
sign convention (each axis's largest-magnitude component positive), and are checked here
against scikit-learn's PCA and against the rotation that made the data.

t-SNE affinities: scikit-learn 1.2's own code on small inputs. "sqdist" is
pairwise_distances(X, squared=True) cast to float32, as TSNE._fit computes it; "conditional"
is sklearn.manifold._utils._binary_search_perplexity(sqdist, perplexity, 0) and "joint" is
sklearn.manifold._t_sne._joint_probabilities(sqdist, perplexity, 0) as a full n x n matrix.

Usage: /usr/bin/python3 tools/viz_ref/gen_viz_fixtures.py
"""
import json
import os

import numpy as np
from scipy.spatial.distance import squareform
from sklearn.decomposition import PCA
from sklearn.manifold import _t_sne, _utils
from sklearn.metrics import pairwise_distances

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests", "fixtures",
                   "viz")


def f32(a):
    """float32 values as Python floats (exact)."""
    return [float(v) for v in np.asarray(a, dtype=np.float32).ravel()]


def f64(a):
    return [float(v) for v in np.asarray(a, dtype=np.float64).ravel()]


def pca_case(name, rng, n, spreads, shift):
    d = len(spreads)
    rot, _ = np.linalg.qr(rng.standard_normal((d, d)))
    z = rng.standard_normal((n, d)) * np.asarray(spreads)
    x = (z @ rot.T + shift).astype(np.float32)
    xc = x.astype(np.float64) - x.astype(np.float64).mean(axis=0)
    cov = xc.T @ xc / (n - 1)
    val, vec = np.linalg.eigh(cov)
    order = np.argsort(val)[::-1]
    val, vec = val[order], vec[:, order]
    top = vec[:, :2].copy()
    for k in range(2):
        if top[np.argmax(np.abs(top[:, k])), k] < 0:
            top[:, k] = -top[:, k]
    coords = xc @ top
    explained = val[:2] / val.sum()
    sk = PCA(n_components=2, svd_solver="full").fit(x.astype(np.float64))
    assert np.allclose(sk.explained_variance_ratio_, explained, rtol=1e-10)
    assert np.allclose(np.abs(sk.components_ @ top), np.eye(2), atol=1e-8)
    # the leading axes are the rotation's first columns (up to sign)
    assert abs(abs(top[:, 0] @ rot[:, 0]) - 1) < 1e-2, abs(top[:, 0] @ rot[:, 0])
    return {"name": name, "n": n, "d": d, "x": f32(x), "coords": f64(coords),
            "explained": f64(explained), "axis1": f64(rot[:, 0]), "axis2": f64(rot[:, 1])}


def tsne_case(name, x, perplexity):
    x = np.asarray(x, dtype=np.float32)
    sqd = pairwise_distances(x, metric="euclidean", squared=True).astype(np.float32)
    cond = _utils._binary_search_perplexity(sqd, perplexity, 0)
    joint = squareform(_t_sne._joint_probabilities(sqd, perplexity, 0))
    return {"name": name, "n": x.shape[0], "d": x.shape[1], "perplexity": perplexity,
            "x": f32(x), "sqdist": f32(sqd), "conditional": f64(cond), "joint": f64(joint)}


def main():
    rng = np.random.default_rng(20240611)
    pca = [
        pca_case("rotated_6d", rng, 300, [5.0, 2.0, 0.5, 0.2, 0.1, 0.05], 3.0),
        pca_case("rotated_40d", rng, 150, [4.0, 2.5] + [0.3 / (1 + k) for k in range(38)], -1.5),
    ]
    blobs = np.concatenate([rng.standard_normal((12, 5)), rng.standard_normal((12, 5)) + 4.0])
    spread = rng.standard_normal((24, 8)) * 30.0  # distances in the thousands: beta halves first
    near = rng.standard_normal((24, 3)) * 0.01    # tiny distances: beta doubles first
    dup = np.concatenate([blobs[:20], blobs[:4]])  # duplicated points (zero distances)
    tsne = [
        tsne_case("blobs_p5", blobs, 5.0),
        tsne_case("blobs_p15", blobs, 15.0),
        tsne_case("spread_p7", spread, 7.0),
        tsne_case("near_p6", near, 6.0),
        tsne_case("duplicates_p4", dup, 4.0),
    ]
    os.makedirs(OUT, exist_ok=True)
    with open(os.path.join(OUT, "viz_ref.json"), "w") as f:
        json.dump({"pca": pca, "tsne_p": tsne}, f, separators=(",", ":"))
        f.write("\n")


if __name__ == "__main__":
    main()
