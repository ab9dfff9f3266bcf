"""Reference implementations of dml's hinge family (src/loss/loss_hinge.c,
src/loss/loss_hinge_triplet.c): contrastive, triplet, margin, lifted, generalized_lifted.

Written from the formulas (docs/losses.md, shared METHODS.md section 2), vectorised with masks:
no Python loop over anchors, pairs or triplets. Distances are computed with the plain formula
(torch.cdist without the matrix-product shortcut), independently of dml's GEMM path.

Conventions shared with dml:
  - Without a reference set the batch is compared with itself, self pairs excluded; with one
    (ref = (ref_emb, ref_labels)) only with the reference set, and no gradient reaches it.
  - For similarities (distance=cosine|dot) every hinge flips: with v = sigma m (sigma = +1 for
    distances, -1 for similarities) each formula keeps its distance form in v, thresholds on
    the metric are multiplied by sigma, gap margins (triplet margin, margin-loss alpha) are not.
  - reduction: "nonzero" = mean over terms > 0, "mean" = over all terms, "sum"; 0 when the
    divisor is 0.
"""
import torch
import torch.nn.functional as F

from loss_ref.common import SIMILARITIES, pair_matrix

_FAR = -1e4  # stands for -inf inside log-sum-exp (keeps gradients finite)


def _matrix(emb, labels, ref, distance, normalize):
    """m [b, r], positive and negative masks [b, r], sigma, whether the columns are the batch."""
    m, pos, neg, _, _ = pair_matrix(emb, labels, ref, distance, normalize)
    return m, pos, neg, (-1.0 if distance in SIMILARITIES else 1.0), ref is None


def _reduce(terms, active, reduction):
    """terms: 1-D tensor of term values, active: bool mask of the terms counted as non-zero."""
    s = terms.sum()
    if reduction == "sum":
        return s
    n = terms.numel() if reduction == "mean" else int(active.sum())
    return s / n if n > 0 else s * 0.0


def _lse(x, mask):
    return torch.logsumexp(torch.where(mask, x, torch.full_like(x, _FAR)), dim=-1)


def contrastive(emb, labels, params, ref, pos_margin=0.0, neg_margin=1.0, power=1.0,
                distance="euclidean", normalize=1, reduction="nonzero"):
    m, pos, neg, sg, _ = _matrix(emb, labels, ref, distance, normalize)
    v = sg * m
    xp = torch.relu(v - sg * pos_margin)[pos]
    xn = torch.relu(sg * neg_margin - v)[neg]
    return (_reduce(xp ** power, xp > 0, reduction) + _reduce(xn ** power, xn > 0, reduction))


def triplet(emb, labels, params, ref, margin=0.05, swap=0, soft=0, distance="euclidean",
            normalize=1, reduction="nonzero", _band=None, _batch_hard=False):
    """Triplets as (positive pair, column) cells: a [Q, r] grid over the Q positive pairs
    (O(b P r) memory, never b r r). _band=(lo, hi): only the triplets with lo < gap <= hi (a
    band miner such as semihard); _batch_hard: one triplet per anchor, its farthest positive
    and closest negative (ties to the lowest column). Both on the unswapped gap v_an - v_ap."""
    m, pos, neg, sg, self_cols = _matrix(emb, labels, ref, distance, normalize)
    v = sg * m
    ai, pi = torch.where(pos)                         # the Q positive pairs (a, p)
    vp = v[ai, pi][:, None]                           # [Q, 1]
    vn = v[ai]                                        # [Q, r]: v[a, n]
    trip = neg[ai]                                    # [Q, r]: n is a negative of a
    if _band is not None:
        g0 = (vn - vp).detach()
        trip = trip & (g0 > _band[0]) & (g0 <= _band[1])
    if _batch_hard:
        vd = v.detach()
        hp = torch.where(pos, vd, torch.full_like(vd, -float("inf"))).argmax(1)
        hn = torch.where(neg, vd, torch.full_like(vd, float("inf"))).argmin(1)
        has = pos.any(1) & neg.any(1)
        sel = (pi == hp[ai]) & has[ai]
        cols = torch.arange(v.shape[1])
        trip = sel[:, None] & (cols[None, :] == hn[ai][:, None])
    if swap:
        if not self_cols:
            raise ValueError("swap needs the batch as its own columns")
        vn = torch.minimum(vn, v[pi])                 # v[p, n]
    gap = (vn - vp)[trip]
    if soft:
        terms = F.softplus(-gap)
        return _reduce(terms, torch.ones_like(terms, dtype=torch.bool), reduction)
    terms = torch.relu(margin - gap)
    return _reduce(terms, terms > 0, reduction)


def margin(emb, labels, params, ref, alpha=0.2, beta=1.2, per_class=0, nu=0.0,
           distance="euclidean", normalize=1, reduction="nonzero"):
    m, pos, neg, sg, _ = _matrix(emb, labels, ref, distance, normalize)
    v = sg * m
    b = params["0.beta"]
    bi = (b[labels] if per_class else b[0].expand(len(labels)))[:, None].expand(m.shape)
    x = torch.where(pos, alpha + v - sg * bi, alpha + sg * bi - v)
    valid = pos | neg
    terms, betas = torch.relu(x)[valid], bi[valid]
    active = terms > 0
    counted = betas[active] if reduction == "nonzero" else betas
    s = terms.sum() + nu * counted.sum()
    if reduction == "sum":
        return s
    n = terms.numel() if reduction == "mean" else int(active.sum())
    return s / n if n > 0 else s * 0.0


def margin_params(dim, num_classes, generator, per_class=0, beta=1.2):
    n = num_classes if per_class else 1
    return {"0.beta": torch.full((n,), float(beta))}


def lifted(emb, labels, params, ref, margin=1.0, distance="euclidean", normalize=1,
           reduction="mean"):
    m, pos, neg, sg, self_cols = _matrix(emb, labels, ref, distance, normalize)
    v = sg * m
    L = _lse(sg * margin - v, neg)                    # [b] LSE over row i's negatives
    if self_cols:
        U = torch.logaddexp(L[:, None], L[None, :])   # union of N_i and N_j
        mask = pos & torch.ones_like(pos).triu(1)     # unordered pairs i < j
        half = 1.0
    else:
        U = L[:, None].expand(m.shape)
        mask = pos
        half = 0.5
    J = (U + v)[mask]
    terms = torch.relu(J) ** 2
    # per unordered pair [J]+^2 / (2|P|): the sum counts each pair once, the halves of the
    # reference case are its 1/2
    if reduction == "sum":
        return half * terms.sum()
    n = terms.numel() if reduction == "mean" else int((J > 0).sum())
    return terms.sum() / (2 * n) if n > 0 else terms.sum() * 0.0


def generalized_lifted(emb, labels, params, ref, pos_margin=0.0, neg_margin=1.0,
                       distance="euclidean", normalize=1, reduction="mean"):
    m, pos, neg, sg, _ = _matrix(emb, labels, ref, distance, normalize)
    v = sg * m
    lp = _lse(v - sg * pos_margin, pos)
    ln = _lse(sg * neg_margin - v, neg)
    valid = pos.any(1) & neg.any(1)
    x = (lp + ln)[valid]
    terms = torch.relu(x)
    return _reduce(terms, x > 0, reduction)


LOSSES = {
    "contrastive": (contrastive, None),
    "triplet": (triplet, None),
    "margin": (margin, margin_params),
    "lifted": (lifted, None),
    "generalized_lifted": (generalized_lifted, None),
}
