"""PyTorch side of bench/bench_ops.c: the same layers at batch 192 (forward alone and forward +
backward) and the same whole training step of the reference CNN (forward, normalised-softmax
head + cross-entropy, backward, Adam), with the same protocol (warm-up, then the median of the
repetitions, in ms) and the same inputs: fill() reproduces bench_fill() bit for bit, so the
checksums in the JSON file can be compared with dml's.

Run with Debian's python3-torch: /usr/bin/python3 bench/ops_torch.py --threads 2 --json out.json
"""
import argparse
import json
import os
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

BATCH = 192
HEAD_CLASSES = 6
HEAD_TEMPERATURE = 0.05
SALT_INPUT, SALT_UPSTREAM, SALT_WEIGHT, SALT_BIAS, SALT_HEAD = 1, 2, 3, 4, 999
M32 = 0xFFFFFFFF


def fill(n, salt, scale):
    """bench_fill() of bench_ops.c: float32 values in [-scale, scale) from an integer hash."""
    i = np.arange(n, dtype=np.uint64)
    h = (i * np.uint64(2654435761) + np.uint64(salt * 2246822519)) & np.uint64(M32)
    h ^= h >> np.uint64(16)
    h = (h * np.uint64(2246822507)) & np.uint64(M32)
    h ^= h >> np.uint64(13)
    v = (h >> np.uint64(8)).astype(np.float64) / 16777216.0 * 2.0 - 1.0
    return torch.from_numpy((v * scale).astype(np.float32))


# id, kind, input shape, output features, input needs a gradient (as bench_ops.c)
LAYERS = [
    ("cnn.conv1", "conv", (BATCH, 1, 28, 28), 32, False),
    ("cnn.bn1", "bn", (BATCH, 32, 28, 28), 0, True),
    ("cnn.relu1", "relu", (BATCH, 32, 28, 28), 0, True),
    ("cnn.pool1", "pool", (BATCH, 32, 28, 28), 0, True),
    ("cnn.conv2", "conv", (BATCH, 32, 14, 14), 64, True),
    ("cnn.bn2", "bn", (BATCH, 64, 14, 14), 0, True),
    ("cnn.relu2", "relu", (BATCH, 64, 14, 14), 0, True),
    ("cnn.pool2", "pool", (BATCH, 64, 14, 14), 0, True),
    ("cnn.flatten", "flatten", (BATCH, 64, 7, 7), 0, True),
    ("cnn.fc", "linear", (BATCH, 3136), 128, True),
    ("cnn.l2norm", "l2norm", (BATCH, 128), 0, True),
    ("mlp.fc1", "linear", (BATCH, 784), 512, False),
    ("mlp.relu", "relu", (BATCH, 512), 0, True),
    ("mlp.fc2", "linear", (BATCH, 512), 512, True),
    ("mlp.fc3", "linear", (BATCH, 512), 128, True),
    ("mlp.l2norm", "l2norm", (BATCH, 128), 0, True),
]


class L2Norm(nn.Module):
    def forward(self, x):
        return F.normalize(x, p=2.0, dim=1, eps=1e-12)


def make_layer(kind, shape, out_features):
    if kind == "conv":
        m = nn.Conv2d(shape[1], out_features, 3, padding=1)
    elif kind == "linear":
        m = nn.Linear(shape[1], out_features)
    elif kind == "bn":
        return nn.BatchNorm2d(shape[1], eps=1e-5, momentum=0.1)
    elif kind == "relu":
        return nn.ReLU()
    elif kind == "pool":
        return nn.MaxPool2d(2)
    elif kind == "flatten":
        return nn.Flatten()
    else:
        return L2Norm()
    with torch.no_grad():
        w = m.weight
        m.weight.copy_(fill(w.numel(), SALT_WEIGHT, 1.0 / np.sqrt(w.numel() // w.shape[0])).view_as(w))
        m.bias.copy_(fill(m.bias.numel(), SALT_BIAS, 0.1))
    return m


def checksum(t):
    if t is None:
        return None
    v = t.detach().reshape(-1).double().numpy()
    w = (np.arange(v.size) % 97 + 1) / 97.0
    return [float(v.sum()), float(np.abs(v).sum()), float((v * w).sum())]


def median(v):
    return float(np.median(np.array(v)))


def bench_layer(spec, reps, warmup):
    lid, kind, shape, out_features, input_grad = spec
    layer = make_layer(kind, shape, out_features)
    layer.train()
    x = fill(int(np.prod(shape)), SALT_INPUT, 1.0).view(shape).clone()
    if input_grad:
        x.requires_grad_(True)
    up = None
    tf, tt = [], []
    for rep in range(warmup + reps):
        for p in layer.parameters():
            p.grad = None
        x.grad = None
        t0 = time.perf_counter()
        y = layer(x)
        t1 = time.perf_counter()
        if up is None:
            up = fill(y.numel(), SALT_UPSTREAM, 1.0).view(y.shape).clone()
        y.backward(up)
        t2 = time.perf_counter()
        if rep >= warmup:
            tf.append(1e3 * (t1 - t0))
            tt.append(1e3 * (t2 - t0))
    params = list(layer.parameters())
    return {
        "id": lid,
        "forward_ms": median(tf),
        "total_ms": median(tt),
        "out": checksum(y),
        "dx": checksum(x.grad) if input_grad else None,
        "dw": checksum(params[0].grad) if params else None,
    }


def reference_cnn():
    return nn.Sequential(
        nn.Conv2d(1, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(3136, 128), L2Norm())


def fill_model(model):
    """fill_model() of bench_ops.c: conv / linear weights and biases from fill(), salted by
    layer index; batch-norm parameters keep their defaults."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            layer, what = name.split(".")
            layer = int(layer)
            if what == "weight" and p.dim() >= 2:
                p.copy_(fill(p.numel(), 100 + 2 * layer, 1.0 / np.sqrt(p.numel() // p.shape[0])).view_as(p))
            elif what == "bias" and model[layer].weight.dim() >= 2:
                p.copy_(fill(p.numel(), 101 + 2 * layer, 0.1))


def bench_step(reps, warmup):
    model = reference_cnn()
    fill_model(model)
    model.train()
    head = nn.Parameter(fill(HEAD_CLASSES * 128, SALT_HEAD, 1.0).view(HEAD_CLASSES, 128).clone())
    opt_net = torch.optim.Adam(model.parameters(), lr=1e-3)
    opt_head = torch.optim.Adam([head], lr=1e-3)
    x = fill(BATCH * 784, SALT_INPUT, 1.0).view(BATCH, 1, 28, 28).clone()
    y = torch.arange(BATCH, dtype=torch.int64) % HEAD_CLASSES
    tf, tb, to, tt = [], [], [], []
    loss_first = loss_last = None
    for rep in range(warmup + reps):
        t0 = time.perf_counter()
        z = model(x)
        logits = z @ F.normalize(head, p=2.0, dim=1, eps=1e-12).t()
        loss = F.cross_entropy(logits * (1.0 / HEAD_TEMPERATURE), y)
        t1 = time.perf_counter()
        opt_net.zero_grad(set_to_none=True)
        opt_head.zero_grad(set_to_none=True)
        loss.backward()
        t2 = time.perf_counter()
        opt_net.step()
        opt_head.step()
        t3 = time.perf_counter()
        lv = float(loss.detach())
        if rep == 0:
            loss_first = lv
        loss_last = lv
        if rep >= warmup:
            tf.append(1e3 * (t1 - t0))
            tb.append(1e3 * (t2 - t1))
            to.append(1e3 * (t3 - t2))
            tt.append(1e3 * (t3 - t0))
    total = median(tt)
    return {
        "forward_ms": median(tf), "backward_ms": median(tb), "optim_ms": median(to),
        "total_ms": total, "images_per_s": 1e3 * BATCH / total,
        "loss_first": loss_first, "loss_last": loss_last,
        "params": sum(p.numel() for p in model.parameters()) + head.numel(),
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--json", required=True)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    layers = [bench_layer(s, a.reps, a.warmup) for s in LAYERS]
    step = bench_step(a.reps, a.warmup)
    out = {
        "impl": "torch", "torch_version": torch.__version__, "threads": a.threads,
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", ""),
        "reps": a.reps, "warmup": a.warmup, "batch": BATCH, "layers": layers, "step": step,
    }
    with open(a.json, "w") as f:
        json.dump(out, f, indent=1)
    for r in layers:
        print("  %-12s %10.3f %10.3f" % (r["id"], r["forward_ms"], r["total_ms"]))
    print("  step total %.3f ms = %.0f images/s (OMP_WAIT_POLICY=%s)"
          % (step["total_ms"], step["images_per_s"], out["omp_wait_policy"] or "default"))


if __name__ == "__main__":
    main()
