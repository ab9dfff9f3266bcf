"""Merges the JSON files of bench_ops, ops_torch.py (run twice: OMP_WAIT_POLICY=PASSIVE and
unset), bench_gemm and gemm_torch.py into one table and one JSON file (bench/run_ops.sh calls it).

Each side may come as several files, one per round (run_ops.sh alternates dml and PyTorch
rounds so that a burst of load elsewhere hits both): every time is then the median over rounds
of the per-round medians. For each layer PyTorch's faster configuration is kept (by forward + backward time) and named.
Ratios are torch time / dml time: above 1 means dml is faster. The check column compares the
checksums (sum, sum of |.|, position-weighted sum) of the layer output, the input gradient and
the weight gradient, both sides having computed on identical inputs: the largest difference,
relative to the sum of |.|, must stay below 1e-3.
"""
import argparse
import json
import os
import platform
import time

BATCH = 192
CHECK_TOL = 1e-3


def load(path):
    with open(path) as f:
        return json.load(f)


def med(values):
    v = sorted(values)
    n = len(v)
    return v[n // 2] if n % 2 else 0.5 * (v[n // 2 - 1] + v[n // 2])


def load_rounds(paths):
    """One side's results over rounds: the first round's document with every time replaced by
    the median over rounds; "rounds" holds each round's whole-step time."""
    docs = [load(p) for p in paths]
    per_round = [d["step"]["total_ms"] for d in docs]
    out = json.loads(json.dumps(docs[0]))
    for i, layer in enumerate(out["layers"]):
        for key in ("forward_ms", "total_ms"):
            layer[key] = med([d["layers"][i][key] for d in docs])
    for key in ("forward_ms", "backward_ms", "optim_ms", "total_ms"):
        out["step"][key] = med([d["step"][key] for d in docs])
    out["step"]["images_per_s"] = 1e3 * out["batch"] / out["step"]["total_ms"]
    out["rounds"] = per_round
    return out


def check_error(a, b):
    """Largest checksum difference relative to the reference's sum of |.|; None if absent."""
    worst = 0.0
    for key in ("out", "dx", "dw"):
        x, y = a.get(key), b.get(key)
        if x is None and y is None:
            continue
        if x is None or y is None:
            return float("inf")
        scale = max(abs(y[1]), 1e-30)
        worst = max(worst, max(abs(p - q) for p, q in zip(x, y)) / scale)
    return worst


def step_gflop():
    """Multiply-adds of the reference CNN's forward + backward at batch 192, in GFLOP (2 per
    multiply-add): convolutions and linear layers (and the 6-class head); the first conv needs
    no input gradient. Elementwise work is not counted."""
    n = BATCH
    conv1 = 2 * n * 32 * 28 * 28 * 1 * 9
    conv2 = 2 * n * 64 * 14 * 14 * 32 * 9
    fc = 2 * n * 128 * 3136
    head = 2 * n * 6 * 128
    fwd = conv1 + conv2 + fc + head
    bwd = conv1 + 2 * conv2 + 2 * fc + 2 * head
    return fwd / 1e9, (fwd + bwd) / 1e9


# Forward GFLOP and backward/forward arithmetic ratio of the conv and linear layers (a first
# layer computes no input gradient, so its backward is one product, not two).
LAYER_GFLOP = {
    "cnn.conv1": (2 * BATCH * 32 * 28 * 28 * 1 * 9 / 1e9, 1),
    "cnn.conv2": (2 * BATCH * 64 * 14 * 14 * 32 * 9 / 1e9, 2),
    "cnn.fc": (2 * BATCH * 128 * 3136 / 1e9, 2),
    "mlp.fc1": (2 * BATCH * 512 * 784 / 1e9, 1),
    "mlp.fc2": (2 * BATCH * 512 * 512 / 1e9, 2),
    "mlp.fc3": (2 * BATCH * 128 * 512 / 1e9, 2),
}


def ratio(torch_ms, dml_ms):
    return torch_ms / dml_ms if dml_ms > 0 else float("nan")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dml", required=True, nargs="+")
    ap.add_argument("--torch-passive", required=True, nargs="+")
    ap.add_argument("--torch-default", required=True, nargs="+")
    ap.add_argument("--gemm-dml")
    ap.add_argument("--gemm-torch-passive")
    ap.add_argument("--gemm-torch-default")
    ap.add_argument("--load-before", default="")
    ap.add_argument("--load-after", default="")
    ap.add_argument("--out", required=True)
    a = ap.parse_args()

    d = load_rounds(a.dml)
    runs = {"PASSIVE": load_rounds(a.torch_passive), "default": load_rounds(a.torch_default)}
    tl = {name: {r["id"]: r for r in run["layers"]} for name, run in runs.items()}

    print("Layers at batch %d, %d threads, median of %d repetitions (median over %d rounds); "
          "torch %s;\nratio = torch ms / dml ms (> 1: dml faster)" % (
              d["batch"], d["threads"], d["reps"], len(a.dml), runs["PASSIVE"]["torch_version"]))
    head = "  %-12s %-26s %8s %8s %6s   %8s %8s %6s  %-8s %s" % (
        "layer", "", "dml fwd", "torch", "ratio", "dml f+b", "torch", "ratio", "torch w/", "check")
    print(head)
    rows = []
    failed = []
    for r in d["layers"]:
        best_name = min(runs, key=lambda k: tl[k][r["id"]]["total_ms"])
        t = tl[best_name][r["id"]]
        err = check_error(r, t)
        ok = err <= CHECK_TOL
        if not ok:
            failed.append(r["id"])
        row = {
            "id": r["id"], "desc": r["desc"],
            "dml_forward_ms": r["forward_ms"], "torch_forward_ms": t["forward_ms"],
            "ratio_forward": ratio(t["forward_ms"], r["forward_ms"]),
            "dml_total_ms": r["total_ms"], "torch_total_ms": t["total_ms"],
            "ratio_total": ratio(t["total_ms"], r["total_ms"]),
            "torch_config": "OMP_WAIT_POLICY=" + best_name,
            "torch_total_ms_by_config": {k: tl[k][r["id"]]["total_ms"] for k in runs},
            "check_rel_error": err, "check_ok": ok,
        }
        rows.append(row)
        print("  %-12s %-26s %8.3f %8.3f %6.2f   %8.3f %8.3f %6.2f  %-8s %s" % (
            r["id"], r["desc"], r["forward_ms"], t["forward_ms"], row["ratio_forward"],
            r["total_ms"], t["total_ms"], row["ratio_total"], best_name,
            ("ok %.0e" if ok else "MISMATCH %.1e") % err))

    ds = d["step"]
    best_name = min(runs, key=lambda k: runs[k]["step"]["total_ms"])
    ts = runs[best_name]["step"]
    fwd_gf, step_gf = step_gflop()
    print("\nCNN training step at batch %d (forward, normalised-softmax head + cross-entropy, "
          "backward, Adam); torch with OMP_WAIT_POLICY=%s" % (BATCH, best_name))
    print("  %-22s %10s %10s %7s" % ("", "dml", "torch", "ratio"))
    step_rows = {}
    for key, label in (("forward_ms", "forward + loss, ms"), ("backward_ms", "backward, ms"),
                       ("optim_ms", "Adam, ms"), ("total_ms", "whole step, ms")):
        step_rows[key] = {"dml": ds[key], "torch": ts[key], "ratio": ratio(ts[key], ds[key])}
        print("  %-22s %10.3f %10.3f %7.2f" % (label, ds[key], ts[key], step_rows[key]["ratio"]))
    print("  %-22s %10.0f %10.0f %7.2f" % ("images/s", ds["images_per_s"], ts["images_per_s"],
                                          ds["images_per_s"] / ts["images_per_s"]))
    dml_gfs = step_gf / (ds["total_ms"] / 1e3)
    torch_gfs = step_gf / (ts["total_ms"] / 1e3)
    print("  %-22s %10.1f %10.1f   (%.2f GFLOP of direct conv/linear arithmetic per step)" % (
        "effective GFLOP/s", dml_gfs, torch_gfs, step_gf))
    loss_err = abs(ds["loss_first"] - ts["loss_first"]) / max(abs(ts["loss_first"]), 1e-30)
    print("  %-22s %10.6f %10.6f   (same weights and batch: relative difference %.1e)" % (
        "loss, first step", ds["loss_first"], ts["loss_first"], loss_err))
    print("  %-22s %10.6f %10.6f   (after %d Adam steps on the same batch)" % (
        "loss, last step", ds["loss_last"], ts["loss_last"], d["reps"] + d["warmup"] - 1))
    print("  torch whole step by configuration: %s" % ", ".join(
        "OMP_WAIT_POLICY=%s %.3f ms" % (k, runs[k]["step"]["total_ms"]) for k in runs))
    print("  whole step per round, ms: dml %s; torch PASSIVE %s; torch default %s" % tuple(
        " ".join("%.1f" % t for t in r["rounds"]) for r in (d, runs["PASSIVE"], runs["default"])))
    if loss_err > CHECK_TOL:
        failed.append("step.loss")

    gemm = None
    if a.gemm_dml:
        g = load(a.gemm_dml)
        gt = {}
        for name, path in (("PASSIVE", a.gemm_torch_passive), ("default", a.gemm_torch_default)):
            if path and os.path.exists(path):
                gt[name] = {r["id"]: r for r in load(path)["shapes"]}
        mg = g.get("measured_ghz", 0.0)
        print("\nsgemm, %d threads (%s; kernels: %s, OPENBLAS_CORETYPE=%s)" % (
            g["threads"], g["openblas_config"], g["openblas_core"],
            g["openblas_coretype_env"] or "unset"))
        print("  peak = %d cores x %d FMA x lanes x 2 x clock: at %.3f GHz (%s) AVX-512 %.1f, "
              "AVX2 %.1f GFLOP/s" % (g["threads"], g["fma_units"], g["ghz"], g["ghz_source"],
                                     g["peak_avx512_gflops"], g["peak_avx2_gflops"]))
        if mg > 0:
            print("         at %.3f GHz (measured running clock) AVX-512 %.1f, AVX2 %.1f GFLOP/s" % (
                mg, g["peak_avx512_gflops_measured_clock"], g["peak_avx2_gflops_measured_clock"]))
        print("  %-20s %-36s %9s %9s %6s  %13s  %13s" % (
            "id", "shape", "dml GF/s", "torch", "ratio", "%512 nom/meas", "%AVX2 nom/meas"))
        grow = []
        for s in g["shapes"]:
            tbest = None
            for name in gt:
                r = gt[name].get(s["id"])
                if r and (tbest is None or r["gflops"] > tbest[1]["gflops"]):
                    tbest = (name, r)
            tg = tbest[1]["gflops"] if tbest else float("nan")
            p5, p2 = s["gflops"] / g["peak_avx512_gflops"], s["gflops"] / g["peak_avx2_gflops"]
            m5 = s["gflops"] / g["peak_avx512_gflops_measured_clock"] if mg > 0 else float("nan")
            m2 = s["gflops"] / g["peak_avx2_gflops_measured_clock"] if mg > 0 else float("nan")
            grow.append(dict(s, torch_gflops=tg, torch_config=tbest[0] if tbest else None,
                             ratio=s["gflops"] / tg if tbest else None,
                             frac_avx512=p5, frac_avx2=p2, frac_avx512_measured_clock=m5,
                             frac_avx2_measured_clock=m2))
            print("  %-20s %-36s %9.1f %9s %6s  %5.1f%%/%5.1f%%  %5.1f%%/%5.1f%%" % (
                s["id"], s["what"][:36], s["gflops"], "%.1f" % tg if tbest else "-",
                "%.2f" % (s["gflops"] / tg) if tbest else "-", 100 * p5, 100 * m5, 100 * p2,
                100 * m2))
        print("  (ratio = dml GFLOP/s / torch.matmul GFLOP/s = torch time / dml time)")
        gemm = {"dml": g, "torch": {k: list(v.values()) for k, v in gt.items()}, "rows": grow}

    peak = None
    if gemm and gemm["dml"].get("measured_ghz", 0) > 0:
        peak = (gemm["dml"]["peak_avx512_gflops_measured_clock"],
                gemm["dml"]["peak_avx2_gflops_measured_clock"], "measured")
    elif gemm:
        peak = (gemm["dml"]["peak_avx512_gflops"], gemm["dml"]["peak_avx2_gflops"], "nominal")
    print("\nConv and linear layers, effective GFLOP/s = direct-algorithm arithmetic of forward + "
          "backward / time%s;\na convolution computed by a fast algorithm (Winograd) does fewer "
          "multiplies and can pass 100 %%" % (
              "\n(%% of the AVX-512 / AVX2 peak at the %s clock)" % peak[2] if peak else ""))
    print("  %-12s %8s %8s %8s   %-15s %-15s" % ("layer", "GFLOP", "dml", "torch",
                                                 "dml % peak" if peak else "",
                                                 "torch % peak" if peak else ""))
    layer_gflops = []
    for row in rows:
        if row["id"] not in LAYER_GFLOP:
            continue
        fwd, bwd_mult = LAYER_GFLOP[row["id"]]
        total = fwd * (1 + bwd_mult)
        dg, tg = total / (row["dml_total_ms"] / 1e3), total / (row["torch_total_ms"] / 1e3)
        layer_gflops.append({"id": row["id"], "gflop": total, "dml_gflops": dg,
                             "torch_gflops": tg})
        pct = lambda x: "%5.1f / %5.1f" % (100 * x / peak[0], 100 * x / peak[1]) if peak else ""
        print("  %-12s %8.3f %8.1f %8.1f   %-15s %-15s" % (row["id"], total, dg, tg, pct(dg),
                                                        pct(tg)))

    print("\nload average: before %s; after %s" % (a.load_before or "?", a.load_after or "?"))
    if failed:
        print("CHECK FAILED (dml and torch disagree): %s" % ", ".join(failed))
    out = {
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "host": platform.node(),
        "load_before": a.load_before, "load_after": a.load_after,
        "threads": d["threads"], "batch": d["batch"], "reps": d["reps"], "rounds": len(a.dml),
        "layers": rows, "step": step_rows,
        "images_per_s": {"dml": ds["images_per_s"], "torch": ts["images_per_s"]},
        "step_gflop": step_gf, "step_achieved_gflops": {"dml": dml_gfs, "torch": torch_gfs},
        "step_torch_config": "OMP_WAIT_POLICY=" + best_name,
        "loss_first": {"dml": ds["loss_first"], "torch": ts["loss_first"]},
        "loss_last": {"dml": ds["loss_last"], "torch": ts["loss_last"]},
        "check_failed": failed, "gemm": gemm, "layer_gflops": layer_gflops,
        "raw": {"dml": d, "torch_passive": runs["PASSIVE"], "torch_default": runs["default"]},
    }
    with open(a.out, "w") as f:
        json.dump(out, f, indent=1)
    print("wrote %s" % a.out)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
