"""Reference implementations of dml's softmax family (src/loss/loss_softmax.c):
multi_similarity, circle, supcon, ntxent, npair.

Written from the formulas (shared METHODS.md section 2; the top comment of loss_softmax.c),
vectorised with masks: no Python loop over anchors or pairs. Distances are computed with the
plain formula (torch.cdist without the matrix-product shortcut, or x @ y.T on F.normalize'd rows
for cosine), independently of dml's GEMM path.

Conventions shared with dml:
  - Without a reference set the batch is compared with itself, self pairs excluded; with one
    (ref = (ref_emb, ref_labels)) only with the reference set, and no gradient reaches it.
  - u = s for similarities (distance=cosine|dot), u = -d for distances: every formula is
    written in "larger = closer" u. multi_similarity also flips its base (pytorch-metric-
    learning's margin convention); circle takes similarities only.
  - miner: "multi_similarity" (keep negative n if u_n + eps > min_P u_p, positive p if
    u_p - eps < max_N u_n, eps given as miner.epsilon= or epsilon=) or "all";
    multi_similarity mines by default, the others do not.
  - reduction: "mean" over all terms, "nonzero" over the terms > 0, "sum"; 0 when the divisor
    is 0.
"""
import torch

from loss_ref.common import SIMILARITIES, pair_matrix

_INF = float("inf")


def _matrix(emb, labels, ref, distance, normalize):
    """m [b, r], positive and negative masks, whether m holds similarities, the compared rows
    and columns (normalised when the distance normalises)."""
    m, pos, neg, x, y = pair_matrix(emb, labels, ref, distance, normalize)
    return m, pos, neg, distance in SIMILARITIES, x, y


def _reduce(terms, reduction):
    """terms: 1-D tensor of every term (zeros included)."""
    s = terms.sum()
    if reduction == "sum":
        return s
    n = terms.numel() if reduction == "mean" else int((terms > 0).sum())
    return s / n if n > 0 else s * 0.0


def _lse(x, mask):
    """Row-wise log-sum-exp over mask; rows with an empty mask give -inf without NaN
    gradients (those rows must be masked out by the caller)."""
    has = mask.any(dim=1)
    safe = torch.where(has[:, None], torch.where(mask, x, torch.full_like(x, -_INF)),
                       torch.zeros_like(x))
    out = torch.logsumexp(safe, dim=1)
    return torch.where(has, out, torch.full_like(out, -_INF)), has


def ms_mine(u, pos, neg, epsilon):
    """The multi-similarity miner on u (larger = closer): the kept positives and negatives."""
    u = u.detach()
    min_p = torch.where(pos, u, torch.full_like(u, _INF)).min(dim=1, keepdim=True).values
    max_n = torch.where(neg, u, torch.full_like(u, -_INF)).max(dim=1, keepdim=True).values
    return pos & (u - epsilon < max_n), neg & (u + epsilon > min_p)


def ms_margin(u, pos, neg, epsilon):
    """Smallest distance of a mining decision from its threshold (fixtures keep it away from
    float32 rounding)."""
    u = u.detach()
    min_p = torch.where(pos, u, torch.full_like(u, _INF)).min(dim=1, keepdim=True).values
    max_n = torch.where(neg, u, torch.full_like(u, -_INF)).max(dim=1, keepdim=True).values
    dp = torch.where(pos, (u - epsilon - max_n).abs(), torch.full_like(u, _INF))
    dn = torch.where(neg, (u + epsilon - min_p).abs(), torch.full_like(u, _INF))
    return float(torch.minimum(dp, dn).min())


def _mined(u, pos, neg, miner, opts):
    """opts: the miner's epsilon as "miner.epsilon" (spec form) or "epsilon"."""
    if miner == "multi_similarity":
        eps = opts.get("miner.epsilon", opts.get("epsilon", 0.1))
        return ms_mine(u, pos, neg, float(eps))
    if miner in ("all", "", None):
        return pos, neg
    raise ValueError(miner)


def multi_similarity(emb, labels, params, ref, alpha=2.0, beta=50.0, base=0.5,
                     distance="cosine", normalize=1, reduction="mean", miner="multi_similarity",
                     **opts):
    m, pos, neg, sim, _, _ = _matrix(emb, labels, ref, distance, normalize)
    sg = 1.0 if sim else -1.0
    u, bs = sg * m, sg * base
    pos, neg = _mined(u, pos, neg, miner, opts)
    zero = torch.zeros_like(u[:, :1])
    # log(1 + sum e^x) = LSE over {0} and the kept pairs
    xp = torch.where(pos, -alpha * (u - bs), torch.full_like(u, -_INF))
    xn = torch.where(neg, beta * (u - bs), torch.full_like(u, -_INF))
    lp = torch.logsumexp(torch.cat([zero, xp], dim=1), dim=1) / alpha
    ln = torch.logsumexp(torch.cat([zero, xn], dim=1), dim=1) / beta
    return _reduce(lp + ln, reduction)


def circle(emb, labels, params, ref, m=0.4, gamma=80.0, distance="cosine", normalize=1,
           reduction="nonzero", miner="all", **opts):
    s, pos, neg, sim, _, _ = _matrix(emb, labels, ref, distance, normalize)
    if not sim:
        raise ValueError("circle takes similarities")
    pos, neg = _mined(s, pos, neg, miner, opts)
    ap = torch.clamp_min(1.0 + m - s.detach(), 0.0)   # detached weights
    an = torch.clamp_min(s.detach() + m, 0.0)
    lse_p, has_p = _lse(-gamma * ap * (s - (1.0 - m)), pos)
    lse_n, has_n = _lse(gamma * an * (s - m), neg)
    valid = has_p & has_n
    z = torch.where(valid, lse_p + lse_n, torch.zeros_like(lse_p))
    terms = torch.where(valid, torch.logaddexp(z, torch.zeros_like(z)), torch.zeros_like(z))
    return _reduce(terms, reduction)


def supcon(emb, labels, params, ref, temperature=0.1, distance="cosine", normalize=1,
           reduction="nonzero", miner="all", **opts):
    m, pos, neg, sim, _, _ = _matrix(emb, labels, ref, distance, normalize)
    u = m if sim else -m
    pos, neg = _mined(u, pos, neg, miner, opts)
    z = u / temperature
    has_p = pos.any(dim=1)
    denom, _ = _lse(z, (pos | neg) & has_p[:, None])
    denom = torch.where(has_p, denom, torch.zeros_like(denom))
    log_prob = z - denom[:, None]
    npos = pos.sum(dim=1).clamp_min(1)
    terms = -torch.where(pos, log_prob, torch.zeros_like(z)).sum(dim=1) / npos
    return _reduce(torch.where(has_p, terms, torch.zeros_like(terms)), reduction)


def ntxent(emb, labels, params, ref, temperature=0.07, distance="cosine", normalize=1,
           reduction="mean", miner="all", **opts):
    m, pos, neg, sim, _, _ = _matrix(emb, labels, ref, distance, normalize)
    u = m if sim else -m
    pos, neg = _mined(u, pos, neg, miner, opts)
    z = u / temperature
    lse_n, has_n = _lse(z, neg)            # log sum_N e^{z_n}, -inf without negatives
    # -log(e^{z_p} / (e^{z_p} + sum_N e^{z_n})) = log(e^{z_p} + e^{lse_n}) - z_p
    l = torch.logaddexp(z, lse_n[:, None]) - z
    l = torch.where(has_n[:, None], l, torch.zeros_like(l))
    return _reduce(l[pos], reduction)


def _first_two(labels):
    """Per distinct label (sorted): its label, first index, second index (-1 when none)."""
    order = torch.sort(labels, stable=True).indices
    sl = labels[order]
    n = len(sl)
    start = torch.ones(n, dtype=torch.bool)
    start[1:] = sl[1:] != sl[:-1]
    gid = torch.cumsum(start.long(), 0) - 1
    first_at = torch.nonzero(start).squeeze(1)
    rank = torch.arange(n) - first_at[gid]
    first = order[first_at]
    second = torch.full_like(first, -1)
    second[gid[rank == 1]] = order[rank == 1]
    return sl[first_at], first, second


def npair(emb, labels, params, ref, l2_reg=0.002, distance="dot", normalize=0,
          reduction="mean", miner="all", **opts):
    if miner not in ("all", "", None):
        raise ValueError("npair takes no miner")
    _, _, _, sim, x, y = _matrix(emb, labels, ref, distance, normalize)
    lab, first, second = _first_two(labels)
    if ref is None:
        keep = second >= 0
        anc, posi = first[keep], second[keep]
    else:
        rlab, rfirst, _ = _first_two(ref[1])
        eq = lab[:, None] == rlab[None, :]
        keep = eq.any(dim=1)
        anc = first[keep]
        posi = rfirst[eq.long().argmax(dim=1)[keep]]
    if len(anc) == 0:
        return emb.sum() * 0.0
    a, p = x[anc], y[posi]
    if distance in ("cosine", "dot"):
        S = a @ p.t()
    elif distance == "euclidean":
        S = -torch.cdist(a, p, compute_mode="donot_use_mm_for_euclid_dist")
    else:
        S = -((a[:, None, :] - p[None, :, :]) ** 2).sum(-1)
    ce = torch.logsumexp(S, dim=1) - torch.diagonal(S)
    loss = _reduce(ce, reduction)
    if sim and ref is None:
        loss = loss + l2_reg * 0.25 * ((a * a).sum(1).mean() + (p * p).sum(1).mean())
    return loss


LOSSES = {
    "multi_similarity": (multi_similarity, None),
    "circle": (circle, None),
    "supcon": (supcon, None),
    "ntxent": (ntxent, None),
    "npair": (npair, None),
}
