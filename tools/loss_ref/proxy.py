"""Reference implementations of dml's proxy and classifier losses (src/loss/loss_proxy.c):
proxy_nca, proxy_anchor, normalized_softmax, cosface, arcface, subcenter_arcface,
cross_entropy.

Written from the formulas (shared METHODS.md section 2, the file comment of loss_proxy.c),
vectorised with masks over the [b, rows] matrix between the batch and the learnable rows: no
Python loop over rows, proxies or classes. Distances use the plain formula (torch.cdist without
the matrix-product shortcut, or the sum of squared differences), independently of dml's GEMM.

Conventions shared with dml:
  - The learnable matrix is stored [rows, dim], one row per proxy / class / sub-centre (row
    c * K + k is sub-centre k of class c); params are looked up by the name after "<term>.".
  - u = -sigma m is the closeness (sigma = +1 for distances, -1 for similarities).
  - reduction over the batch rows (heads, proxy_nca): "mean" over all rows, "nonzero" over the
    rows whose loss is > 0, "sum"; proxy_anchor reduces each of its two sides on its own.
  - Proxy losses take no reference set (dml refuses one); labels are class indices.
"""
import math

import torch
import torch.nn.functional as F

from loss_ref.common import SIMILARITIES, distance_matrix

ARC_EPS = 1e-7


def _param(params, name):
    for k, v in params.items():
        if k.split(".", 1)[-1] == name:
            return v
    raise KeyError(f"no parameter '{name}' in {list(params)}")


def _matrix(emb, w, distance, normalize):
    """m [b, rows] between the batch and the rows of w, and sigma."""
    m, _, _ = distance_matrix(emb, w, distance, normalize)
    return m, (-1.0 if distance in SIMILARITIES else 1.0)


def _reduce(terms, reduction, n_mean=None):
    """terms: 1-D tensor. mean divides by n_mean (default: the number of terms)."""
    if reduction == "sum":
        return terms.sum()
    if reduction == "mean":
        n = terms.numel() if n_mean is None else n_mean
        return terms.sum() / n if n > 0 else terms.sum() * 0.0
    active = terms > 0
    n = int(active.sum())
    return torch.where(active, terms, torch.zeros_like(terms)).sum() / n if n > 0 else \
        terms.sum() * 0.0


def _onehot(labels, classes):
    return labels[:, None] == torch.arange(classes)[None, :]


def _check_ref(ref):
    if ref is not None:
        raise ValueError("proxy and classifier losses take no reference set")


def proxy_nca(emb, labels, params, ref, scale=1.0, distance="squared_euclidean", normalize=1,
              reduction="mean"):
    _check_ref(ref)
    w = _param(params, "proxies")
    m, sg = _matrix(emb, w, distance, normalize)
    z = scale * (-sg * m)
    y = _onehot(labels, w.shape[0])
    others = torch.logsumexp(torch.where(y, torch.full_like(z, -math.inf), z), dim=1)
    li = others - z[y]
    return _reduce(li, reduction)


def proxy_anchor(emb, labels, params, ref, alpha=32.0, delta=0.1, distance="cosine",
                 normalize=1, reduction="mean"):
    _check_ref(ref)
    w = _param(params, "proxies")
    m, sg = _matrix(emb, w, distance, normalize)
    classes = w.shape[0]
    pos = _onehot(labels, classes)
    xp = alpha * sg * (m - delta)    # cosine: -alpha (s - delta)
    xn = -alpha * sg * (m + delta)   # cosine:  alpha (s + delta)
    zero = torch.zeros(1, classes, dtype=m.dtype)

    def log1p_sum_exp(x, mask):      # per proxy: log(1 + sum_{rows in mask} e^x)
        x = torch.where(mask, x, torch.full_like(x, -math.inf))
        return torch.logsumexp(torch.cat([x, zero], 0), dim=0)

    with_pos = pos.any(0)
    pos_terms = log1p_sum_exp(xp, pos)[with_pos]
    neg_terms = log1p_sum_exp(xn, ~pos)
    return _reduce(pos_terms, reduction) + _reduce(neg_terms, reduction, n_mean=classes)


def _ce_rows(z, labels, smoothing=0.0):
    return F.cross_entropy(z, labels, reduction="none", label_smoothing=float(smoothing))


def normalized_softmax(emb, labels, params, ref, temperature=0.05, distance="cosine",
                       normalize=1, reduction="mean"):
    _check_ref(ref)
    w = _param(params, "weight")
    m, sg = _matrix(emb, w, distance, normalize)
    return _reduce(_ce_rows(-sg * m / temperature, labels), reduction)


def cosface(emb, labels, params, ref, scale=64.0, margin=0.35, distance="cosine", normalize=1,
            reduction="mean"):
    _check_ref(ref)
    assert distance == "cosine"
    w = _param(params, "weight")
    cos, _ = _matrix(emb, w, distance, normalize)
    y = _onehot(labels, w.shape[0])
    z = scale * torch.where(y, cos - margin, cos)
    return _reduce(_ce_rows(z, labels), reduction)


def _arcface_logits(cos, labels, scale, margin):
    """cos [b, C] class cosines -> ArcFace logits."""
    y = _onehot(labels, cos.shape[1])
    cy = cos[y]
    c = torch.clamp(cy, -1.0 + ARC_EPS, 1.0 - ARC_EPS)
    theta = torch.acos(c)
    target = torch.where(theta > math.pi - margin, cy - margin * math.sin(margin),
                         torch.cos(theta + margin))
    return scale * torch.where(y, target[:, None].expand_as(cos), cos)


def arcface(emb, labels, params, ref, scale=64.0, margin=0.5, distance="cosine", normalize=1,
            reduction="mean"):
    _check_ref(ref)
    assert distance == "cosine"
    w = _param(params, "weight")
    cos, _ = _matrix(emb, w, distance, normalize)
    return _reduce(_ce_rows(_arcface_logits(cos, labels, scale, margin), labels), reduction)


def subcenter_arcface(emb, labels, params, ref, scale=64.0, margin=0.5, centers=3,
                      distance="cosine", normalize=1, reduction="mean"):
    _check_ref(ref)
    assert distance == "cosine"
    w = _param(params, "weight")
    k = int(centers)
    cos_all, _ = _matrix(emb, w, distance, normalize)
    cos = cos_all.reshape(emb.shape[0], w.shape[0] // k, k).max(dim=2).values
    return _reduce(_ce_rows(_arcface_logits(cos, labels, scale, margin), labels), reduction)


def cross_entropy(emb, labels, params, ref, label_smoothing=0.0, distance="dot", normalize=0,
                  reduction="mean"):
    _check_ref(ref)
    w = _param(params, "weight")
    b = _param(params, "bias")
    m, sg = _matrix(emb, w, distance, normalize)
    return _reduce(_ce_rows(-sg * m + b, labels, label_smoothing), reduction)


def _proxies(dim, num_classes, g):
    return {"0.proxies": torch.randn(num_classes, dim, generator=g)}


def _weight(rows_per_class):
    def make(dim, num_classes, g):
        return {"0.weight": torch.randn(num_classes * rows_per_class, dim, generator=g)}
    return make


def _linear(dim, num_classes, g):
    bound = 1.0 / math.sqrt(dim)
    return {"0.weight": (torch.rand(num_classes, dim, generator=g) * 2 - 1) * bound,
            "0.bias": (torch.rand(num_classes, generator=g) * 2 - 1) * bound}


LOSSES = {
    "proxy_nca": (proxy_nca, _proxies),
    "proxy_anchor": (proxy_anchor, _proxies),
    "normalized_softmax": (normalized_softmax, _weight(1)),
    "cosface": (cosface, _weight(1)),
    "arcface": (arcface, _weight(1)),
    "subcenter_arcface": (subcenter_arcface, _weight(3)),
    "cross_entropy": (cross_entropy, _linear),
}
