"""PyTorch side of bench/bench_gemm.c: torch.matmul (float32) at the shapes listed in
bench_gemm's JSON file (2048^3 and the reference models' shapes, transposes as views), with the
same protocol: one warm-up call, then `reps` repetitions of as many calls as make about 20 ms,
median per-call time, GFLOP/s = 2 M N K / t.

Run with Debian's python3-torch:
  /usr/bin/python3 bench/gemm_torch.py --shapes gemm_dml.json --threads 2 --json gemm_torch.json
"""
import argparse
import json
import os
import time

import numpy as np
import torch


def bench(m, n, k, ta, tb, reps):
    g = torch.Generator().manual_seed(0)
    a = torch.rand((k, m) if ta else (m, k), generator=g) - 0.5
    b = torch.rand((n, k) if tb else (k, n), generator=g) - 0.5
    a = a.t() if ta else a
    b = b.t() if tb else b
    out = torch.empty(m, n)
    t0 = time.perf_counter()
    torch.matmul(a, b, out=out)
    one = time.perf_counter() - t0
    calls = max(1, min(10000, int(0.020 / one) if one > 0 else 1000))
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        for _ in range(calls):
            torch.matmul(a, b, out=out)
        times.append((time.perf_counter() - t0) / calls)
    t = float(np.median(times))
    return 1e3 * t, 2.0 * m * n * k / t / 1e9


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shapes", required=True, help="bench_gemm's JSON file")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--json", required=True)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    with open(a.shapes) as f:
        shapes = [s for s in json.load(f)["shapes"] if not s["id"].startswith("dml_op")]
    rows = []
    for s in shapes:
        ms, gf = bench(s["m"], s["n"], s["k"], s["ta"], s["tb"], a.reps)
        rows.append({"id": s["id"], "ms": ms, "gflops": gf})
        print("  %-20s %10.4f ms %9.1f GFLOP/s" % (s["id"], ms, gf), flush=True)
    with open(a.json, "w") as f:
        json.dump({"impl": "torch.matmul", "torch_version": torch.__version__,
                   "threads": a.threads, "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", ""),
                   "reps": a.reps, "shapes": rows}, f, indent=1)


if __name__ == "__main__":
    main()
