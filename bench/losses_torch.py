"""PyTorch side of bench/bench_losses.c (LOSS protocol): the same losses, written in PyTorch
(tools/loss_ref/, the same code that produces the test fixtures, run here in float32), on the
same embeddings (fill() reproduces bench_fill() bit for bit), the same labels and the same
parameter values (read from dml's JSON), forward + backward, median of the repetitions in ms.
Euclidean distances go through torch.cdist's matrix-product path (the fast form a PyTorch user
gets from torch.cdist or pytorch-metric-learning), not the plain formula the fixtures use;
--plain-distances times the fixtures' form instead.
The loss value of the first call is written too, so the report can check that both sides
computed the same thing.

Run with Debian's python3-torch:
  /usr/bin/python3 bench/losses_torch.py --dml dml.json --threads 2 --reps 20 --json out.json
"""
import argparse
import importlib
import inspect
import json
import os
import pkgutil
import sys
import time

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tools"))
M32 = 0xFFFFFFFF


def fill(n, salt):
    """bench_fill() of bench_losses.c: float32 values in [-1, 1) from an integer hash."""
    i = np.arange(n, dtype=np.uint64)
    h = (i * np.uint64(2654435761) + np.uint64(salt * 2246822519)) & np.uint64(M32)
    h ^= h >> np.uint64(16)
    h = (h * np.uint64(2246822507)) & np.uint64(M32)
    h ^= h >> np.uint64(13)
    v = (h >> np.uint64(8)).astype(np.float64) / 16777216.0 * 2.0 - 1.0
    return torch.from_numpy(v.astype(np.float32))


def make_batch(b, dim, classes):
    e = fill(b * dim, 1).reshape(b, dim).double()
    e = (e / e.norm(dim=1, keepdim=True)).float()
    labels = torch.tensor([(i * 7 + i // 16) % classes for i in range(b)], dtype=torch.long)
    return e, labels


def registry():
    import loss_ref
    out = {}
    for m in pkgutil.iter_modules(loss_ref.__path__):
        mod = importlib.import_module("loss_ref." + m.name)
        out.update(getattr(mod, "LOSSES", {}))
    return out


def parse_spec(spec):
    """'1*triplet margin=0.2 ... miner=semihard miner.margin=0.2' -> name, options."""
    words = spec.split()
    name = words[0].split("*")[-1]
    opts = {}
    for w in words[1:]:
        k, v = w.split("=", 1)
        try:
            x = float(v)
            opts[k] = int(x) if x.is_integer() else x
        except ValueError:
            opts[k] = v
    return name, opts


def miner_kwargs(name, opts):
    """Removes miner= and miner.* from opts and returns the keyword arguments with which the
    PyTorch reference applies the same miner: the triplet reference takes a band (_band) or
    batch-hard selection (_batch_hard); the multi-similarity reference mines by default."""
    miner = opts.pop("miner", None)
    mopts = {k[len("miner."):]: opts.pop(k) for k in list(opts) if k.startswith("miner.")}
    if miner in (None, "all"):
        return {"miner": "all"} if name == "multi_similarity" else {}
    if name == "triplet" and miner == "semihard":
        return {"_band": (0.0, mopts.get("margin", 0.2))}
    if name == "triplet" and miner == "batch_hard":
        return {"_batch_hard": True}
    if name == "multi_similarity" and miner == "multi_similarity":
        return {"miner": "multi_similarity", "epsilon": mopts.get("epsilon", 0.1)}
    raise ValueError(f"no PyTorch form of {name} with miner={miner}")


def call_kwargs(fn, opts):
    """The options fn accepts (by name; **kwargs takes them all)."""
    sig = inspect.signature(fn)
    if any(p.kind == p.VAR_KEYWORD for p in sig.parameters.values()):
        return dict(opts)
    return {k: v for k, v in opts.items() if k in sig.parameters}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dml", required=True)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--json", required=True)
    ap.add_argument("--plain-distances", action="store_true",
                    help="Euclidean distances by the plain formula (as the test fixtures) "
                         "instead of torch.cdist's matrix-product path")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    import loss_ref.common
    loss_ref.common.MATMUL_DISTANCES = not a.plain_distances
    with open(a.dml) as f:
        doc = json.load(f)
    reg = registry()
    dim, classes = doc["dim"], doc["classes"]
    out = []
    batches = {}
    for r in doc["results"]:
        name, opts = parse_spec(r["spec"])
        if name not in reg:
            print(f"{r['name']}: no PyTorch implementation of '{name}' in tools/loss_ref/")
            continue
        fn = reg[name][0]
        b = r["b"]
        if b not in batches:
            batches[b] = make_batch(b, dim, classes)
        emb0, labels = batches[b]
        params = {k: torch.tensor(v["data"], dtype=torch.float32).reshape(v["shape"])
                  .requires_grad_(True) for k, v in r["params"].items()}
        mkw = miner_kwargs(name, opts)
        kw = call_kwargs(fn, {k: v for k, v in opts.items() if k != "memory"})
        kw.update(mkw)
        ref = None
        if opts.get("memory", 0):
            # cross-batch memory: the batch against itself and a full memory of past batches
            mem = int(opts["memory"])
            ref = ("memory", fill(mem * dim, 5).reshape(mem, dim),
                   torch.tensor([i % classes for i in range(mem)]))
        times, value = [], None
        for rep in range(-3, a.reps):
            emb = emb0.clone().requires_grad_(True)
            for p in params.values():
                p.grad = None
            t0 = time.perf_counter()
            if ref is None:
                loss = fn(emb, labels, params, None, **kw)
            else:
                # as pytorch-metric-learning's CrossBatchMemory: enqueue the detached batch,
                # then compare the batch with the whole memory
                cols = (torch.cat([emb.detach(), ref[1]]), torch.cat([labels, ref[2]]))
                loss = fn(emb, labels, params, cols, **kw)
            loss.backward()
            t1 = time.perf_counter()
            if rep == -3:
                value = float(loss)
            if rep >= 0:
                times.append((t1 - t0) * 1e3)
        times.sort()
        n = len(times)
        ms = times[n // 2] if n % 2 else 0.5 * (times[n // 2 - 1] + times[n // 2])
        print(f"{r['name']:<20} B={b:<5} {ms:9.3f} ms  loss {value:.6g}")
        out.append({"name": r["name"], "b": b, "ms": ms, "loss": value})
    with open(a.json, "w") as f:
        json.dump({"threads": a.threads, "torch": torch.__version__, "results": out}, f, indent=1)


if __name__ == "__main__":
    main()
