#!/usr/bin/env python3
"""PyTorch side of the FMNIST benchmark: the recipes of `dml train` (configs/fmnist-*.json),
written in plain PyTorch as fast as it honestly goes on CPU, with the same data, batches,
losses, optimiser and evaluation, writing the same DIR/metrics.json, DIR/test_embeddings.npy
(float32 [10000, 128], test split in file order) and DIR/test_labels.npy (int32).

  fmnist-open-cnn-triplet    reference CNN, triplet loss margin 0.2 (Euclidean on the normalised
                             embeddings), semi-hard triplets 0 < d_an - d_ap <= 0.2, mean over
                             the triplets with a positive loss; classes 0-5 of the train split
  fmnist-open-mlp-ms         MLP 784-512-512-128, multi-similarity loss (alpha 2, beta 50,
                             base 0.5, cosine) with the multi-similarity miner (epsilon 0.1)
  fmnist-closed-cnn-triplet  the first on all 60,000 training images; kNN classification of the
                             test images against the training embeddings (k = 1, 5, 10)

P x K batches (6 classes x 32 images) from a numpy sampler with the semantics of
docs/sampler.md; an epoch is n // 192 batches; Adam lr 1e-3; PyTorch default inits, seeded.

Timed: train = the training loop alone (data already in tensors); embed = the forward pass of
the 10,000 test images in eval mode, batch 500, under inference_mode; wall = from the start of
this script (before importing torch) to the end of the evaluation; peak_rss_mb = ru_maxrss
then. The baselines (raw pixels, the untrained network) are evaluated after that, so they
count in neither.

Usage: /usr/bin/python3 bench/fmnist/fmnist_torch.py --recipe NAME --out DIR [--threads 2]
       [--epochs 3] [--data /usr/share/datasets/fashion-mnist] [--seed 1] [--no-baselines]
"""
import time

T_START = time.time()

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import resource  # noqa: E402
import sys  # noqa: E402


def parse_args():
    ap = argparse.ArgumentParser(description="FMNIST benchmark recipes in PyTorch")
    ap.add_argument("--recipe", required=True, choices=sorted(RECIPES))
    ap.add_argument("--out", required=True)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--no-baselines", action="store_true", help="skip the two baselines")
    ap.add_argument("--raw-pixels-cache", metavar="FILE",
                    help="JSON file of raw-pixel baseline figures (a property of the test set, "
                         "not of the run): read when it has the subsets, else written")
    ap.add_argument("--channels-last", type=int, choices=(0, 1), default=1,
                    help="CNN tensors in channels-last layout (default 1: faster with oneDNN)")
    ap.add_argument("--embed-mode", choices=("frozen", "eager"), default="frozen",
                    help="frozen (default): torch.jit.optimize_for_inference of the trained "
                         "model (batch norm folded into the convolutions); eager: the module")
    ap.add_argument("--quiet", action="store_true")
    return ap.parse_args()


RECIPES = {
    "fmnist-open-cnn-triplet": {"model": "cnn", "loss": "triplet", "classes": list(range(6)),
                                "open": True},
    "fmnist-open-mlp-ms": {"model": "mlp", "loss": "ms", "classes": list(range(6)),
                           "open": True},
    "fmnist-closed-cnn-triplet": {"model": "cnn", "loss": "triplet", "classes": None,
                                  "open": False},
}
P, K = 6, 32
LR = 1e-3
MEAN, STD = 0.2860, 0.3530
EMBED_BATCH = 500
MARGIN = 0.2          # triplet loss margin, and the semi-hard miner's margin
MS_ALPHA, MS_BETA, MS_BASE, MS_EPS = 2.0, 50.0, 0.5, 0.1

ARGS = parse_args() if __name__ == "__main__" else None
if ARGS is not None:
    # numpy's OpenBLAS (evaluation) on the same thread count; before numpy is imported
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS"):
        os.environ.setdefault(var, str(ARGS.threads))

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import evaluate as ev  # noqa: E402


# ---- P x K sampler (docs/sampler.md) ---------------------------------------------------------
class PKSampler:
    """p distinct classes x k examples per batch, examples of a class contiguous. Per epoch each
    class is shuffled and cut into chunks of k (the last completed cyclically with the class's
    first examples); batch t of B (R = B - t left) takes every class with exactly R chunks left,
    then draws classes without replacement with probability proportional to their chunks left;
    free places (fewer than p classes left) take re-drawn chunks of classes not in the batch,
    drawn proportionally to class size, k cyclically consecutive examples from a random start.
    Places within each batch, then the batches, are shuffled. B = max(ceil(M / p), max m)."""

    def __init__(self, labels, p, k, seed):
        labels = np.asarray(labels)
        self.classes, inv = np.unique(labels, return_inverse=True)
        if p > len(self.classes):
            raise ValueError(f"p = {p} classes per batch, but only {len(self.classes)} classes")
        self.members = [np.flatnonzero(inv == c) for c in range(len(self.classes))]
        self.sizes = np.array([len(m) for m in self.members], dtype=np.int64)
        self.chunks = -(-self.sizes // k)
        self.p, self.k, self.seed = p, k, seed
        self.num_batches = int(max(-(-self.chunks.sum() // p), self.chunks.max()))

    def epoch(self, e):
        """int64 [num_batches, p * k] example positions for epoch e (a function of seed, e)."""
        rng = np.random.default_rng([self.seed, e])
        p, k, nc = self.p, self.k, len(self.classes)
        order = [m[rng.permutation(len(m))] for m in self.members]
        left = self.chunks.copy()
        nxt = np.zeros(nc, dtype=np.int64)
        plan = np.empty((self.num_batches, p, 2), dtype=np.int64)  # (class, start)
        B = self.num_batches
        for t in range(B):
            forced = np.flatnonzero(left == B - t)
            rest = np.flatnonzero((left > 0) & (left < B - t))
            n_draw = min(p - len(forced), len(rest))
            if n_draw > 0:
                w = left[rest].astype(np.float64)
                drawn = rng.choice(rest, size=n_draw, replace=False, p=w / w.sum())
            else:
                drawn = np.empty(0, dtype=np.int64)
            chosen = np.concatenate([forced, drawn]).astype(np.int64)
            starts = nxt[chosen] * k
            nxt[chosen] += 1
            left[chosen] -= 1
            free = p - len(chosen)
            if free > 0:  # re-drawn chunks
                others = np.setdiff1d(np.arange(nc), chosen)
                w = self.sizes[others].astype(np.float64)
                extra = rng.choice(others, size=free, replace=False, p=w / w.sum())
                chosen = np.concatenate([chosen, extra])
                starts = np.concatenate([starts, rng.integers(0, self.sizes[extra])])
            perm = rng.permutation(p)
            plan[t, :, 0] = chosen[perm]
            plan[t, :, 1] = starts[perm]
        plan = plan[rng.permutation(B)]
        out = np.empty((B, p, k), dtype=np.int64)
        ar = np.arange(k)
        for c in range(nc):
            sel = plan[:, :, 0] == c
            if sel.any():
                pos = (plan[:, :, 1][sel][:, None] + ar[None, :]) % self.sizes[c]
                out[sel] = order[c][pos]
        return out.reshape(B, p * k)


# ---- models ----------------------------------------------------------------------------------
class L2Norm(nn.Module):
    def forward(self, x):
        return F.normalize(x, p=2.0, dim=1, eps=1e-12)


def make_model(kind):
    if kind == "cnn":
        return nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(3136, 128), L2Norm())
    return nn.Sequential(
        nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 512), nn.ReLU(), nn.Linear(512, 128),
        L2Norm())


# ---- losses (docs/losses.md) -----------------------------------------------------------------
def _euclidean(emb):
    """Euclidean distances |a|^2 + |c|^2 - 2 a.c, clamped at 0, with gradient 0 at 0."""
    sq = (emb * emb).sum(dim=1)
    d2 = (sq[:, None] + sq[None, :] - 2.0 * (emb @ emb.t())).clamp_min(0.0)
    pos = d2 > 0
    return torch.where(pos, torch.where(pos, d2, torch.ones_like(d2)).sqrt(),
                       torch.zeros_like(d2))


def triplet_semihard(emb, labels, margin=MARGIN, mine_margin=MARGIN):
    """triplet margin=0.2 miner=semihard miner.margin=0.2 reduction=nonzero: triplets (a, p, n)
    with 0 < d_an - d_ap <= mine_margin, loss [d_ap - d_an + margin]+, mean over the triplets
    whose loss is > 0 (0 when there is none)."""
    b = emb.shape[0]
    d = _euclidean(emb)
    same = labels[:, None] == labels[None, :]
    eye = torch.eye(b, dtype=torch.bool)
    pos, neg = same & ~eye, ~same
    npos, nneg = pos.sum(1), neg.sum(1)
    if bool((npos == npos[0]).all()) and bool((nneg == nneg[0]).all()):
        # P x K batch: every anchor has the same numbers of positives and negatives, so gather
        # them into [b, K-1] and [b, b-K] and form the [b, K-1, b-K] triplet block
        pi = pos.nonzero()[:, 1].view(b, int(npos[0]))
        ni = neg.nonzero()[:, 1].view(b, int(nneg[0]))
        dap = d.gather(1, pi)[:, :, None]
        dan = d.gather(1, ni)[:, None, :]
    else:  # any batch: the dense [b, b, b] block
        dap = d[:, :, None]
        dan = d[:, None, :]
    gap = dan - dap
    with torch.no_grad():
        keep = (gap > 0) & (gap <= mine_margin)
        if dap.shape[1] == b:
            keep &= pos[:, :, None] & neg[:, None, :]
    terms = torch.where(keep, margin - gap, torch.zeros_like(gap))  # >= 0 where kept
    nz = int((terms > 0).sum())
    return terms.sum() / max(nz, 1)


def multi_similarity(emb, labels, alpha=MS_ALPHA, beta=MS_BETA, base=MS_BASE, eps=MS_EPS):
    """multi_similarity alpha=2 beta=50 base=0.5 (cosine) with the multi_similarity miner
    (epsilon 0.1); mean over all b anchors:
      L_i = (1/alpha) log(1 + sum_P e^{-alpha (s - base)}) + (1/beta) log(1 + sum_N e^{beta (s - base)})
    over the kept pairs: negative n if s_in > min_P s_ip - eps, positive p if s_ip < max_N s_in + eps
    (anchors without a positive or a negative keep nothing)."""
    b = emb.shape[0]
    e = F.normalize(emb, p=2.0, dim=1, eps=1e-12)
    s = e @ e.t()
    with torch.no_grad():
        same = labels[:, None] == labels[None, :]
        eye = torch.eye(b, dtype=torch.bool)
        pos, neg = same & ~eye, ~same
        inf = torch.tensor(float("inf"))
        min_p = torch.where(pos, s, inf).min(dim=1).values
        max_n = torch.where(neg, s, -inf).max(dim=1).values
        both = (pos.any(1) & neg.any(1))[:, None]
        keep_n = neg & (s > (min_p - eps)[:, None]) & both
        keep_p = pos & (s < (max_n + eps)[:, None]) & both
    ninf = torch.full_like(s, float("-inf"))
    zero = torch.zeros(b, 1, dtype=s.dtype)
    xp = torch.cat([zero, torch.where(keep_p, -alpha * (s - base), ninf)], dim=1)
    xn = torch.cat([zero, torch.where(keep_n, beta * (s - base), ninf)], dim=1)
    return (torch.logsumexp(xp, dim=1) / alpha + torch.logsumexp(xn, dim=1) / beta).mean()


LOSSES = {"triplet": triplet_semihard, "ms": multi_similarity}


# ---- train / embed ---------------------------------------------------------------------------
def to_input(x_uint8, kind, channels_last):
    """uint8 [n, 28, 28] -> contiguous float32, /255 then (x - mean) / std."""
    x = torch.from_numpy(x_uint8).to(torch.float32).div_(255.0).sub_(MEAN).div_(STD)
    if kind == "mlp":
        return x.reshape(len(x), 784).contiguous()
    x = x.reshape(len(x), 1, 28, 28)
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x.contiguous()


def embed(model, x, batch=EMBED_BATCH):
    """Embeddings of x by an eval-mode model, batch by batch, without autograd."""
    out = torch.empty(len(x), 128, dtype=torch.float32)
    with torch.inference_mode():
        for i in range(0, len(x), batch):
            out[i:i + batch] = model(x[i:i + batch])
    return out


def train(model, x, y, sampler, epochs, loss_fn, log):
    """The training loop; returns (images, seconds, mean loss per epoch)."""
    opt = torch.optim.Adam(model.parameters(), lr=LR, foreach=True)
    nb = len(y) // (P * K)
    model.train()
    images = 0
    losses = []
    t0 = time.perf_counter()
    for epoch in range(epochs):
        batches = torch.from_numpy(sampler.epoch(epoch)[:nb])
        total = torch.zeros((), dtype=torch.float64)
        for bi in range(nb):
            idx = batches[bi]
            xb = x.index_select(0, idx)
            yb = y.index_select(0, idx)
            loss = loss_fn(model(xb), yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.detach()
            images += len(idx)
        losses.append(float(total) / nb)
        log(f"epoch {epoch + 1}/{epochs}: mean loss {losses[-1]:.5f} "
            f"({time.perf_counter() - t0:.1f} s)")
    return images, time.perf_counter() - t0, losses


def peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def inference_model(model, mode):
    """The model the embedding pass runs: the eval-mode module itself, or (frozen) the same
    model scripted and frozen by torch.jit.optimize_for_inference, which folds batch norm into
    the convolutions and keeps oneDNN layouts between layers: PyTorch's own CPU inference path.
    Returns (model, seconds spent converting)."""
    model.eval()
    if mode == "eager":
        return model, 0.0
    t0 = time.perf_counter()
    frozen = torch.jit.optimize_for_inference(torch.jit.script(model))
    return frozen, time.perf_counter() - t0


def raw_pixels_baseline(a, subsets, yte):
    """Retrieval on the normalised test pixels, Euclidean distance; from --raw-pixels-cache
    when it holds these subsets (for this seed), else computed (and cached)."""
    cache = {}
    if a.raw_pixels_cache and os.path.exists(a.raw_pixels_cache):
        with open(a.raw_pixels_cache) as f:
            cache = json.load(f)
    key = f"seed{a.seed}"
    have = cache.get(key, {})
    todo = {n: c for n, c in subsets.items() if n not in have}
    if todo:
        pix = ev.load_split(a.data, "t10k")[0].reshape(-1, 784).astype(np.float32) / 255.0
        have.update(ev.evaluate_subsets((pix - MEAN) / STD, yte, todo, metric="euclidean",
                                        seed=a.seed))
        if a.raw_pixels_cache:
            cache[key] = have
            with open(a.raw_pixels_cache, "w") as f:
                json.dump(cache, f, indent=1)
    return {n: have[n] for n in subsets}


def main(a):
    log = (lambda s: None) if a.quiet else (lambda s: print(f"[torch {a.recipe}] {s}",
                                                          flush=True))
    torch.set_num_threads(a.threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:
        pass
    rc = RECIPES[a.recipe]
    kind = rc["model"]
    cl = bool(a.channels_last) and kind == "cnn"

    xtr8, ytr = ev.load_split(a.data, "train")
    xte8, yte = ev.load_split(a.data, "t10k")
    if rc["classes"] is not None:
        sel = np.isin(ytr, rc["classes"])
        xtr8, ytr = xtr8[sel], ytr[sel]
    xtr = to_input(xtr8, kind, cl)
    xte = to_input(xte8, kind, cl)
    ytr_t = torch.from_numpy(ytr)
    del xtr8, xte8

    torch.manual_seed(a.seed)
    np.random.seed(a.seed)
    model = make_model(kind)
    if cl:
        model = model.to(memory_format=torch.channels_last)
    init_state = None if a.no_baselines else {k: v.clone() for k, v in
                                              model.state_dict().items()}
    sampler = PKSampler(ytr, P, K, a.seed)
    log(f"{len(ytr)} training images, {len(ytr) // (P * K)} batches of {P}x{K} per epoch, "
        f"{a.threads} threads, OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset')}"
        f"{', channels-last' if cl else ''}")

    n_img, t_train, losses = train(model, xtr, ytr_t, sampler, a.epochs, LOSSES[rc["loss"]], log)

    infer, t_convert = inference_model(model, a.embed_mode)
    embed(infer, xte[:EMBED_BATCH])  # warm-up: the first call of a frozen model optimises it
    t0 = time.perf_counter()
    emb = embed(infer, xte)
    t_embed = time.perf_counter() - t0
    if a.embed_mode != "eager":
        check = embed(model, xte[:EMBED_BATCH])
        diff = float((check - emb[:EMBED_BATCH]).abs().max())
        if diff > 1e-4:
            raise SystemExit(f"fmnist_torch.py: frozen model differs from the module by {diff}")
    log(f"train {n_img / t_train:.0f} images/s, embed {len(xte) / t_embed:.0f} images/s")

    emb_np = emb.numpy()
    os.makedirs(a.out, exist_ok=True)
    np.save(os.path.join(a.out, "test_embeddings.npy"), emb_np.astype(np.float32))
    np.save(os.path.join(a.out, "test_labels.npy"), yte.astype(np.int32))

    result = ev.evaluate_subsets(emb_np, yte, ev.subsets_of(a.recipe), seed=a.seed)
    if not rc["open"]:
        tr_emb = embed(infer, xtr).numpy()
        result["knn"] = ev.knn_classify(tr_emb, ytr, emb_np, yte)
        del tr_emb
    wall = time.time() - T_START
    peak = peak_rss_mb()

    metrics = {
        "recipe": a.recipe, "framework": "pytorch", "threads": a.threads, "epochs": a.epochs,
        "seed": a.seed,
        "train": {"images": n_img, "seconds": t_train, "images_per_s": n_img / t_train},
        "embed": {"images": len(xte), "seconds": t_embed, "images_per_s": len(xte) / t_embed},
        "wall_seconds": wall, "peak_rss_mb": peak,
        "eval": result,
    }
    # the common evaluator's figures: evaluate.py's functions on the same saved embeddings
    with open(os.path.join(a.out, "eval_common.json"), "w") as f:
        json.dump({"recipe": a.recipe, "dir": a.out, "shape": list(emb_np.shape),
                   "problems": [], "eval": {k: v for k, v in result.items() if k != "knn"}},
                  f, indent=1)
    if init_state is not None:
        subsets = {"unseen": ev.UNSEEN, "all": None} if rc["open"] else {"all": None}
        model.load_state_dict(init_state)
        untrained = embed(model, xte).numpy()
        metrics["baselines"] = {
            "raw_pixels": raw_pixels_baseline(a, subsets, yte),
            "untrained": ev.evaluate_subsets(untrained, yte, subsets, seed=a.seed)}
    metrics["pytorch"] = {
        "version": torch.__version__, "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY",
                                                                         "unset"),
        "channels_last": cl, "embed_mode": a.embed_mode,
        "embed_convert_seconds": t_convert, "loss_per_epoch": losses,
        "openblas_coretype": os.environ.get("OPENBLAS_CORETYPE", "unset")}
    with open(os.path.join(a.out, "metrics.json"), "w") as f:
        json.dump(metrics, f, indent=1)
    for name in ("unseen", "seen", "all"):
        if name in result:
            m = result[name]
            log(f"{name:6s} P@1 {m['p_at_1']:.4f} R-Prec {m['r_precision']:.4f} "
                f"MAP@R {m['map_at_r']:.4f} NMI {m['nmi']:.4f}")
    for m in result.get("knn", []):
        log(f"kNN k={m['k']}: accuracy {m['accuracy']:.4f} macro-F1 {m['macro_f1']:.4f}")
    log(f"wall {wall:.1f} s, peak RSS {peak:.0f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main(ARGS))
