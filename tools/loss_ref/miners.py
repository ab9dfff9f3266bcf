"""Reference implementations of dml's miners (src/mine/), vectorised with masks: no Python loop
over anchors, pairs or triplets. Used as the PyTorch side of miner benchmarks and, through
tests/fixtures/miners_ref.json, checked index for index against dml (tests/test_miners.c).

MINERS = {name: fn}, fn(emb, labels, ref=None, distance="euclidean", normalize=1, seed=0,
step=0, **opts) -> dict with
  "pos", "neg": bool [b, r], the pairs the miner keeps (for triplet miners: the pairs that occur
                in at least one kept triplet);
  "triplets":   (a, p, n) int64 tensors sorted by anchor, positive, negative (triplet miners;
                a band miner's band enumerated explicitly), else None.
Without a reference set (ref = (ref_emb, ref_labels)) the batch is compared with itself, self
pairs excluded. opts use dml's option names and defaults.

With key = d for distances and -s for similarities (smaller = closer), gap = key_n - key_p:
  all               every pair
  batch_hard        per anchor the largest-key positive and the smallest-key negative
  easy_hard         the smallest-key positive (hard_positive=1: the largest) and negative
  semihard          triplets with 0 < gap <= margin; hard_triplets gap <= min(margin, 0);
                    margin_triplets gap <= margin                             (margin = 0.2)
  multi_similarity  negative n if key_n < max_P key_p + eps, positive p if key_p > min_N key_n
                    - eps, for anchors with both                              (epsilon = 0.1)
  distance_weighted per positive pair one negative drawn with probability proportional to
                    1/q(d), q(d) = d^(D-2) (1 - d^2/4)^((D-3)/2), d clipped below at cutoff,
                    weight 0 at d >= nonzero_loss_cutoff or where not finite, uniform when an
                    anchor has no weight; the draw inverts the cumulative weights at
                    u = dml_rng_uniform(seed, step, a r + p) (Philox4x32-10, reproduced here).
Ties go to the lowest column (argmax / argmin return the first).

Run as a script to regenerate tests/fixtures/miners_ref.json (Debian's python3-torch):
  /usr/bin/python3 tools/loss_ref/miners.py
"""
import json
import os
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from loss_ref.common import SIMILARITIES, pair_matrix  # noqa: E402  (also run as a script)

M32 = 0xFFFFFFFF


def _matrix(emb, labels, ref, distance, normalize):
    """m [b, r], key [b, r], positive and negative masks [b, r]."""
    m, pos, neg, _, _ = pair_matrix(emb, labels, ref, distance, normalize)
    key = -m if distance in SIMILARITIES else m
    return m, key, pos, neg


def _out(pos, neg, trip=None):
    return {"pos": pos, "neg": neg, "triplets": trip}


def _from_mask(t):
    """(a, p, n) of a bool [b, r, r] mask, in row-major (sorted) order."""
    idx = t.nonzero()
    return idx[:, 0], idx[:, 1], idx[:, 2]


def _from_list(has, p, n, b, r):
    """Pairs and triplets of one (p, n) per anchor where has."""
    a = torch.arange(b)[has]
    p, n = p[has], n[has]
    pos = torch.zeros(b, r, dtype=torch.bool)
    neg = torch.zeros(b, r, dtype=torch.bool)
    pos[a, p] = True
    neg[a, n] = True
    return _out(pos, neg, (a, p, n))


def all_pairs(emb, labels, ref=None, distance="euclidean", normalize=1, seed=0, step=0):
    _, _, pos, neg = _matrix(emb, labels, ref, distance, normalize)
    return _out(pos, neg)


def easy_hard(emb, labels, ref=None, distance="euclidean", normalize=1, seed=0, step=0,
              hard_positive=0):
    _, key, pos, neg = _matrix(emb, labels, ref, distance, normalize)
    inf = torch.full_like(key, float("inf"))
    if hard_positive:
        p = torch.where(pos, key, -inf).argmax(1)
    else:
        p = torch.where(pos, key, inf).argmin(1)
    n = torch.where(neg, key, inf).argmin(1)
    has = pos.any(1) & neg.any(1)
    return _from_list(has, p, n, key.shape[0], key.shape[1])


def batch_hard(emb, labels, ref=None, distance="euclidean", normalize=1, seed=0, step=0):
    return easy_hard(emb, labels, ref, distance, normalize, hard_positive=1)


def _band(emb, labels, ref, distance, normalize, lo, hi):
    _, key, pos, neg = _matrix(emb, labels, ref, distance, normalize)
    gap = key[:, None, :] - key[:, :, None]            # [a, p, n] = key_n - key_p
    t = pos[:, :, None] & neg[:, None, :] & (gap > lo) & (gap <= hi)
    return _out(t.any(2), t.any(1), _from_mask(t))


def semihard(emb, labels, ref=None, distance="euclidean", normalize=1, seed=0, step=0,
             margin=0.2):
    return _band(emb, labels, ref, distance, normalize, 0.0, margin)


def hard_triplets(emb, labels, ref=None, distance="euclidean", normalize=1, seed=0, step=0,
                  margin=0.2):
    return _band(emb, labels, ref, distance, normalize, -float("inf"), min(margin, 0.0))


def margin_triplets(emb, labels, ref=None, distance="euclidean", normalize=1, seed=0, step=0,
                    margin=0.2):
    return _band(emb, labels, ref, distance, normalize, -float("inf"), margin)


def multi_similarity(emb, labels, ref=None, distance="euclidean", normalize=1, seed=0, step=0,
                     epsilon=0.1):
    _, key, pos, neg = _matrix(emb, labels, ref, distance, normalize)
    inf = torch.full_like(key, float("inf"))
    max_p = torch.where(pos, key, -inf).amax(1, keepdim=True)
    min_n = torch.where(neg, key, inf).amin(1, keepdim=True)
    has = (pos.any(1) & neg.any(1))[:, None]
    return _out(pos & has & (key > min_n - epsilon), neg & has & (key < max_p + epsilon))


# ---- Philox4x32-10 (src/core/rng.c), on int64 tensors holding 32-bit words ----

def _mulhilo(a, c):
    """hi, lo 32-bit words of the 64-bit product of the constant a and the words c."""
    a0, a1 = a & 0xFFFF, a >> 16
    c0, c1 = c & 0xFFFF, c >> 16
    mid = a1 * c0 + a0 * c1
    low = a0 * c0 + ((mid & 0xFFFF) << 16)
    hi = a1 * c1 + (mid >> 16) + (low >> 32)
    return hi & M32, low & M32


def rng_uniform(seed, stream, index):
    """dml_rng_uniform(seed, stream, index) for an int64 tensor of indices (float64 values)."""
    c0, c1 = index & M32, (index >> 32) & M32
    c2 = torch.full_like(index, stream & M32)
    c3 = torch.full_like(index, (stream >> 32) & M32)
    k0, k1 = seed & M32, (seed >> 32) & M32
    for _ in range(10):
        hi0, lo0 = _mulhilo(0xD2511F53, c0)
        hi1, lo1 = _mulhilo(0xCD9E8D57, c2)
        c0, c1, c2, c3 = hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0
        k0 = (k0 + 0x9E3779B9) & M32
        k1 = (k1 + 0xBB67AE85) & M32
    return (c0 >> 8).double() / 16777216.0


def distance_weighted(emb, labels, ref=None, distance="euclidean", normalize=1, seed=0, step=0,
                      cutoff=0.5, nonzero_loss_cutoff=1.4):
    if distance != "euclidean" or not normalize:
        raise ValueError("distance_weighted needs distance=euclidean normalize=1")
    m, _, pos, neg = _matrix(emb, labels, ref, distance, normalize)
    b, r = m.shape
    dim = float(emb.shape[1])
    d = m.double().clamp(min=cutoff)
    s = 1.0 - 0.25 * d * d
    lw = (2.0 - dim) * torch.log(d) - 0.5 * (dim - 3.0) * torch.log(s.clamp(min=0.0))
    ok = neg & (d < nonzero_loss_cutoff) & (s > 0) & torch.isfinite(lw) & ~torch.isnan(m)
    lw = torch.where(ok, lw, torch.full_like(lw, -float("inf")))
    mx = lw.amax(1, keepdim=True)
    w = torch.where(ok, torch.exp(lw - torch.where(torch.isfinite(mx), mx, 0.0)), 0.0)
    none = ~ok.any(1, keepdim=True)
    w = torch.where(none, neg.double(), w)              # uniform fallback
    cum = w.cumsum(1)
    has = pos & neg.any(1, keepdim=True)                # one triplet per positive pair
    a, p = has.nonzero(as_tuple=True)
    u = rng_uniform(int(seed), int(step), a * r + p)
    target = u * cum[a, -1]
    n = torch.searchsorted(cum[a], target[:, None], right=True)[:, 0]
    negm = torch.zeros(b, r, dtype=torch.bool)
    negm[a, n] = True
    return _out(has, negm, (a, p, n))


MINERS = {
    "all": all_pairs,
    "batch_hard": batch_hard,
    "easy_hard": easy_hard,
    "semihard": semihard,
    "hard_triplets": hard_triplets,
    "margin_triplets": margin_triplets,
    "multi_similarity": multi_similarity,
    "distance_weighted": distance_weighted,
}
TRIPLET_MINERS = {"batch_hard", "easy_hard", "semihard", "hard_triplets", "margin_triplets",
                  "distance_weighted"}


# ---- the fixture ----

def _f32(t):
    return t.float().double()


def _tensor(t):
    return {"shape": list(t.shape), "data": [float(v) for v in t.flatten()]}


def _ints(t):
    return [int(v) for v in t]


def fixture_case(name, spec, emb, labels, ref=None, seed=0, step=0):
    """One case of tests/fixtures/miners_ref.json: dml's spec, the inputs (rounded to float32)
    and what the reference mines from them (in float64)."""
    words = spec.split()
    opts = {}
    for w in words[1:]:
        k, v = w.split("=", 1)
        opts[k] = v if k == "distance" else float(v)
    opts["normalize"] = int(opts.get("normalize", 1))
    e = _f32(emb)
    lab = torch.tensor(labels, dtype=torch.long)
    r = None if ref is None else (_f32(ref[0]), torch.tensor(ref[1], dtype=torch.long))
    res = MINERS[words[0]](e, lab, r, seed=seed, step=step, **opts)
    pa, po = res["pos"].nonzero(as_tuple=True)
    na, no = res["neg"].nonzero(as_tuple=True)
    t = res["triplets"]
    return {
        "name": name, "spec": spec, "seed": int(seed), "step": int(step),
        "emb": _tensor(e), "labels": _ints(labels),
        "ref": None if r is None else {"emb": _tensor(r[0]), "labels": _ints(ref[1])},
        "kind": "triplets" if words[0] in TRIPLET_MINERS else "pairs",
        "pos": [_ints(pa), _ints(po)], "neg": [_ints(na), _ints(no)],
        "triplets": None if t is None else [_ints(t[0]), _ints(t[1]), _ints(t[2])],
    }


def fixture_cases():
    torch.set_default_dtype(torch.float64)
    g = torch.Generator().manual_seed(2024)
    out = []

    def batch(b, d, classes):
        x = torch.randn(b, d, generator=g)
        lab = [classes[i] for i in torch.randint(len(classes), (b,), generator=g).tolist()]
        return x, lab

    specs = [
        ("all", "all"), ("batch_hard", "batch_hard"), ("easy_hard", "easy_hard"),
        ("easy_hard_hp", "easy_hard hard_positive=1"), ("semihard", "semihard"),
        ("semihard_cos", "semihard margin=0.3 distance=cosine"),
        ("hard_triplets", "hard_triplets"), ("margin_triplets_sq",
                                             "margin_triplets distance=squared_euclidean"),
        ("ms", "multi_similarity"), ("ms_cos", "multi_similarity distance=cosine epsilon=0.2"),
        ("ms_dot", "multi_similarity distance=dot normalize=0"),
        ("batch_hard_dot", "batch_hard distance=dot normalize=0"),
        ("dws", "distance_weighted"), ("dws_cut", "distance_weighted cutoff=0.7"),
    ]
    for i, (name, spec) in enumerate(specs):
        x, lab = batch(12 + i, 4 + i % 5, [7, 42, -3] if i % 3 == 0 else [0, 1, 2, 3])
        out.append(fixture_case(name, spec, x, lab, seed=i, step=3 * i))
        if i % 2 == 0:
            rx, rl = batch(9 + i, x.shape[1], [7, 42, -3] if i % 3 == 0 else [0, 1, 2, 3])
            out.append(fixture_case(name + "_ref", spec, x, lab, ref=(rx, rl), seed=i, step=i))
    x, lab = batch(24, 32, [0, 1, 2])
    out.append(fixture_case("dws_d32", "distance_weighted", x, lab, seed=5, step=11))
    return out


if __name__ == "__main__":
    here = os.path.dirname(os.path.abspath(__file__))
    path = os.path.join(here, "..", "..", "tests", "fixtures", "miners_ref.json")
    cases = fixture_cases()
    with open(path + ".tmp", "w") as f:
        json.dump(cases, f, separators=(",", ":"))
        f.write("\n")
    os.replace(path + ".tmp", path)
    print(f"miners_ref.json: {len(cases)} cases")
