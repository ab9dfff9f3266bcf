"""The matrix every PyTorch reference starts from, written with the plain formulas (no
matrix-product shortcut for Euclidean distances), independently of dml's GEMM path."""
import torch
import torch.nn.functional as F

SIMILARITIES = ("cosine", "dot")

# Timing mode, set by bench/losses_torch.py: Euclidean distances through torch.cdist's
# matrix-product path and squared ones as |x|^2 + |y|^2 - 2 x.y, the fast forms a PyTorch user
# writes (pytorch-metric-learning's LpDistance calls torch.cdist). The fixtures keep False: the
# plain formulas, independent of dml's GEMM expansion.
MATMUL_DISTANCES = False


def distance_matrix(x, y, distance, normalize):
    """m [b, r] between the rows of x and y, and the rows compared (L2-normalised first when
    normalize, always for cosine)."""
    if int(normalize) or distance == "cosine":
        x = F.normalize(x, dim=1)
        y = F.normalize(y, dim=1)
    if distance == "euclidean":
        m = torch.cdist(x, y) if MATMUL_DISTANCES else \
            torch.cdist(x, y, compute_mode="donot_use_mm_for_euclid_dist")
    elif distance == "squared_euclidean" and MATMUL_DISTANCES:
        m = (x.pow(2).sum(1)[:, None] + y.pow(2).sum(1)[None, :] - 2.0 * x @ y.t()).clamp_min(0)
    elif distance == "squared_euclidean":
        m = ((x[:, None, :] - y[None, :, :]) ** 2).sum(-1)
    elif distance in SIMILARITIES:
        m = x @ y.t()
    else:
        raise ValueError(distance)
    return m, x, y


def pair_matrix(emb, labels, ref, distance, normalize):
    """The batch against itself (ref None: self pairs are neither positive nor negative) or
    against the detached reference set ref = (ref_emb, ref_labels): m [b, r], positive and
    negative masks [b, r], and the compared rows and columns."""
    if ref is None:
        cols, col_labels = emb, labels
    else:
        cols, col_labels = ref[0].detach(), ref[1]
    m, x, y = distance_matrix(emb, cols, distance, normalize)
    same = labels[:, None] == col_labels[None, :]
    pos, neg = same.clone(), ~same
    if ref is None:
        pos &= ~torch.eye(len(labels), dtype=torch.bool)
    return m, pos, neg, x, y
