"""Merges bench_losses (dml) and losses_torch.py (PyTorch, run with OMP_WAIT_POLICY=PASSIVE and
unset) into one table: ms per forward + backward call on each side, the ratio torch / dml (above
1: dml is faster; PyTorch's faster configuration is kept) and the relative difference of the loss
values both sides computed on the same inputs ("-" for cross-batch memory, whose contents differ
by construction). bench/run_losses.sh calls it."""
import argparse
import json


def load(path):
    with open(path) as f:
        return json.load(f)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dml", required=True)
    ap.add_argument("--torch", nargs="+", required=True)
    ap.add_argument("--target", type=float, default=3.0)
    ap.add_argument("--out")
    a = ap.parse_args()
    dml = load(a.dml)
    torch_runs = [load(p) for p in a.torch]
    best = {}
    for run in torch_runs:
        for r in run["results"]:
            key = (r["name"], r["b"])
            if key not in best or r["ms"] < best[key]["ms"]:
                best[key] = r
    rows, below = [], []
    print(f"LOSS protocol: D = {dml['dim']}, {dml['classes']} classes, {dml['threads']} threads, "
          f"forward + backward, median ms (PyTorch {torch_runs[0].get('torch', '?')})")
    print(f"{'loss':<20} {'B':>5} {'dml ms':>9} {'torch ms':>9} {'torch/dml':>9} {'loss diff':>9}")
    for r in dml["results"]:
        t = best.get((r["name"], r["b"]))
        if t is None:
            print(f"{r['name']:<20} {r['b']:>5} {r['ms']:>9.3f} {'-':>9} {'-':>9} {'-':>9}")
            continue
        ratio = t["ms"] / r["ms"] if r["ms"] > 0 else float("inf")
        if "memory=" in r["spec"] and "memory=0" not in r["spec"]:
            diff = "-"
        else:
            d = abs(r["loss"] - t["loss"]) / max(abs(t["loss"]), 1e-12)
            diff = f"{d:.1e}"
        print(f"{r['name']:<20} {r['b']:>5} {r['ms']:>9.3f} {t['ms']:>9.3f} {ratio:>8.2f}x {diff:>9}")
        rows.append({"name": r["name"], "b": r["b"], "dml_ms": r["ms"], "torch_ms": t["ms"],
                     "ratio": ratio, "loss_dml": r["loss"], "loss_torch": t["loss"]})
        if ratio < a.target:
            below.append(f"{r['name']} (B={r['b']}: {ratio:.2f}x)")
    if below:
        print(f"below the {a.target:g}x target: " + ", ".join(below))
    else:
        print(f"every loss at or above the {a.target:g}x target")
    if a.out:
        with open(a.out, "w") as f:
            json.dump({"rows": rows, "below_target": below}, f, indent=1)


if __name__ == "__main__":
    main()
