#!/usr/bin/env python3
"""Side-by-side table of the FMNIST benchmark: dml against PyTorch, per recipe.

  compare.py [options] DML_DIRS TORCH_DIRS [DML_DIRS TORCH_DIRS ...]

Each DML_DIRS / TORCH_DIRS is one run directory (DIR/metrics.json, DIR/test_embeddings.npy,
DIR/test_labels.npy) or several, comma-separated, one per repetition, the first being rep 1.
Quality comes from rep 1 (both sides are seeded); speeds and memory are medians over the reps.
Quality is shown twice: each side's own figures (dml's C evaluator, fmnist_torch.py's) and the
common evaluator's (evaluate.py on both sides' test embeddings; DIR/eval_common.json is read
when present, computed and written otherwise).

Targets (PASS/FAIL): MAP@R on the unseen classes (common evaluator) within 1 point of PyTorch's
or better (closed-set recipe: MAP@R on all classes); training throughput dml/PyTorch >= 1.5;
embedding throughput >= 2; peak memory dml/PyTorch <= 0.5.

Options: --torch-other DIR (the other OMP_WAIT_POLICY setting's rep-1 run, repeatable),
--note RECIPE=TEXT (a line under that recipe's table, repeatable),
--load-before / --load-after TEXT, --json FILE, --md FILE (defaults bench/results/fmnist.*).
"""
import argparse
import json
import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import evaluate as ev  # noqa: E402

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
QUALITY = [("p_at_1", "P@1"), ("r_precision", "R-Precision"), ("map_at_r", "MAP@R"),
           ("nmi", "NMI")]
TARGETS = {"quality_points": -1.0, "train_ratio": 1.5, "embed_ratio": 2.0, "memory_ratio": 0.5}


def load(d):
    with open(os.path.join(d, "metrics.json")) as f:
        m = json.load(f)
    m["_dir"] = d
    return m


def common_eval(d, recipe):
    path = os.path.join(d, "eval_common.json")
    if os.path.exists(path):
        with open(path) as f:
            r = json.load(f)
        if r.get("recipe") == recipe:
            return r
    r = ev.evaluate_dir(d, recipe)
    with open(path, "w") as f:
        json.dump(r, f, indent=1)
    return r


def med(values):
    v = [x for x in values if x is not None]
    return statistics.median(v) if v else None


def get(m, *path):
    for p in path:
        if not isinstance(m, dict) or p not in m:
            return None
        m = m[p]
    return m


def fmt(v, kind="q"):
    if v is None:
        return "-"
    if kind == "q":
        return f"{v:.4f}"
    if kind == "pts":
        return f"{v:+.2f} pts"
    if kind == "x":
        return f"{v:.2f}x"
    if kind == "int":
        return f"{v:,.0f}"
    if kind == "s":
        return f"{v:.1f}"
    return str(v)


def ratio(a, b):
    return a / b if a is not None and b not in (None, 0) else None


def pts(a, b):
    return 100.0 * (a - b) if a is not None and b is not None else None


def compare_recipe(dml_dirs, torch_dirs, others):
    dml = [load(d) for d in dml_dirs]
    tor = [load(d) for d in torch_dirs]
    recipe = dml[0]["recipe"]
    for m in dml + tor:
        if m["recipe"] != recipe:
            raise SystemExit(f"compare.py: {m['_dir']} is recipe {m['recipe']}, not {recipe}")
    d1, t1 = dml[0], tor[0]
    other = [o for o in others if o["recipe"] == recipe]
    if "baselines" not in t1 and other and "baselines" in other[0]:
        t1 = dict(t1, baselines=other[0]["baselines"])  # run_fmnist.sh: only PASSIVE has them
    rows = []  # (section, metric, dml, torch, diff text)
    notes = []
    out = {"recipe": recipe, "dml_dirs": dml_dirs, "torch_dirs": torch_dirs,
           "threads": [d1.get("threads"), t1.get("threads")],
           "epochs": [d1.get("epochs"), t1.get("epochs")]}
    if d1.get("threads") != t1.get("threads") or d1.get("epochs") != t1.get("epochs"):
        notes.append(f"WARNING: threads/epochs differ: dml {d1.get('threads')}/"
                     f"{d1.get('epochs')}, PyTorch {t1.get('threads')}/{t1.get('epochs')}")

    ia, ib = get(d1, "train", "images"), get(t1, "train", "images")
    if ia != ib:
        notes.append(f"NOTE: the two sides trained on different numbers of images: dml {ia}, "
                     f"PyTorch {ib} (an epoch of n // 192 batches); throughputs are per image")
    # quality: own figures, then the common evaluator's
    ce_d, ce_t = common_eval(d1["_dir"], recipe), common_eval(t1["_dir"], recipe)
    for side, ce in (("dml", ce_d), ("PyTorch", ce_t)):
        for p in ce["problems"]:
            notes.append(f"WARNING: {side} output ({ce['dir']}): {p}")
    out["quality_own"] = {"dml": d1.get("eval"), "pytorch": t1.get("eval")}
    out["quality_common"] = {"dml": ce_d["eval"], "pytorch": ce_t["eval"]}
    subsets = list(ev.subsets_of(recipe))
    for src, dq, tq in (("own", d1.get("eval", {}), t1.get("eval", {})),
                        ("common", ce_d["eval"], ce_t["eval"])):
        for s in subsets:
            for key, name in QUALITY:
                a, b = get(dq, s, key), get(tq, s, key)
                rows.append((f"quality ({src} evaluator)", f"{s} {name}", fmt(a), fmt(b),
                             fmt(pts(a, b), "pts")))
    # the two evaluators on dml's embeddings should agree (NMI aside: k-means draws differ)
    for s in subsets:
        for key, name in QUALITY[:3]:
            a, b = get(d1, "eval", s, key), get(ce_d["eval"], s, key)
            if a is not None and b is not None and abs(a - b) > 2e-3:
                notes.append(f"WARNING: dml's own {s} {name} {a:.4f} differs from the common "
                             f"evaluator's {b:.4f} on the same embeddings")
    for k_d, k_t in zip(d1.get("eval", {}).get("knn", []) or [{}] * 3,
                        t1.get("eval", {}).get("knn", [])):
        for key, name in (("accuracy", "accuracy"), ("macro_f1", "macro-F1")):
            a, b = k_d.get(key), k_t.get(key)
            rows.append(("kNN classification (own figures)", f"k={k_t['k']} {name}", fmt(a),
                         fmt(b), fmt(pts(a, b), "pts")))

    # baselines
    out["baselines"] = {"dml": d1.get("baselines"), "pytorch": t1.get("baselines")}
    for bname in ("raw_pixels", "untrained"):
        for s in subsets:
            a = get(d1, "baselines", bname, s, "map_at_r")
            b = get(t1, "baselines", bname, s, "map_at_r")
            if a is None and b is None:
                continue
            rows.append(("baselines", f"{bname} {s} MAP@R", fmt(a), fmt(b), fmt(pts(a, b), "pts")))
    check = "unseen" if "unseen" in subsets else "all"
    for side, m, ce in (("dml", d1, ce_d), ("PyTorch", t1, ce_t)):
        trained = get(ce["eval"], check, "map_at_r")
        for bname, label in (("raw_pixels", "raw pixels"), ("untrained", "the untrained network")):
            base, whose = get(m, "baselines", bname, check, "map_at_r"), ""
            if base is None:
                base, whose = get(t1, "baselines", bname, check, "map_at_r"), " (PyTorch's run)"
            if trained is not None and base is not None and trained < base:
                notes.append(f"{side}: the trained model retrieves the {check} classes worse "
                             f"than {label}{whose} (MAP@R {trained:.4f} < {base:.4f}): it has "
                             f"not learned a metric that transfers to them")

    # speed and memory: medians over the reps
    def series(ms, *path):
        return [get(m, *path) for m in ms]
    sp = {}
    for key, path, kind, better in (
            ("train_images_per_s", ("train", "images_per_s"), "int", "ratio"),
            ("train_seconds", ("train", "seconds"), "s", "ratio"),
            ("embed_images_per_s", ("embed", "images_per_s"), "int", "ratio"),
            ("embed_seconds", ("embed", "seconds"), "s", "ratio"),
            ("peak_rss_mb", ("peak_rss_mb",), "int", "ratio"),
            ("wall_seconds", ("wall_seconds",), "s", "ratio")):
        a, b = med(series(dml, *path)), med(series(tor, *path))
        sp[key] = {"dml": a, "pytorch": b, "ratio_dml_over_torch": ratio(a, b),
                   "dml_reps": series(dml, *path), "pytorch_reps": series(tor, *path)}
        rows.append((f"speed and memory (median of {len(dml)} dml / {len(tor)} PyTorch runs)",
                     key.replace("_", " "), fmt(a, kind), fmt(b, kind), fmt(ratio(a, b), "x")))
    out["speed"] = sp
    setting = get(t1, "pytorch", "omp_wait_policy")
    out["pytorch_setting"] = {"omp_wait_policy": setting, "channels_last":
                              get(t1, "pytorch", "channels_last"),
                              "embed_mode": get(t1, "pytorch", "embed_mode")}
    if other:
        o = other[0]
        out["pytorch_other_setting"] = {
            "omp_wait_policy": get(o, "pytorch", "omp_wait_policy"),
            "train_images_per_s": get(o, "train", "images_per_s"),
            "embed_images_per_s": get(o, "embed", "images_per_s"),
            "peak_rss_mb": o.get("peak_rss_mb"), "dir": o["_dir"]}
        notes.append(f"PyTorch ran with OMP_WAIT_POLICY={setting} (rep 1: train "
                     f"{fmt(get(t1, 'train', 'images_per_s'), 'int')} images/s); with "
                     f"OMP_WAIT_POLICY={get(o, 'pytorch', 'omp_wait_policy')}: "
                     f"{fmt(get(o, 'train', 'images_per_s'), 'int')} images/s")
    else:
        notes.append(f"PyTorch ran with OMP_WAIT_POLICY={setting}")

    # targets
    qa = get(ce_d["eval"], check, "map_at_r")
    qb = get(ce_t["eval"], check, "map_at_r")
    tg = [
        (f"MAP@R {check} classes (common evaluator) >= PyTorch - 1 pt",
         pts(qa, qb), lambda v: v >= TARGETS["quality_points"], "pts"),
        ("training throughput dml/PyTorch >= 1.5x", sp["train_images_per_s"]
         ["ratio_dml_over_torch"], lambda v: v >= TARGETS["train_ratio"], "x"),
        ("embedding throughput dml/PyTorch >= 2x", sp["embed_images_per_s"]
         ["ratio_dml_over_torch"], lambda v: v >= TARGETS["embed_ratio"], "x"),
        ("peak memory dml/PyTorch <= 0.5", sp["peak_rss_mb"]["ratio_dml_over_torch"],
         lambda v: v <= TARGETS["memory_ratio"], "x")]
    out["targets"] = []
    for name, v, ok, kind in tg:
        status = "n/a" if v is None else ("PASS" if ok(v) else "FAIL")
        out["targets"].append({"target": name, "value": v, "status": status})
    out["notes"] = notes
    out["rows"] = [list(r) for r in rows]
    return out


def render(results, load_before, load_after):
    lines = ["# FMNIST benchmark: dml against PyTorch", ""]
    if load_before or load_after:
        lines += [f"Load average before {load_before or '-'}, after {load_after or '-'} "
                  f"(2 cores; above about 0.5 the speeds are noisy).", ""]
    for r in results:
        lines += [f"## {r['recipe']}", "",
                  f"threads {r['threads'][0]}, epochs {r['epochs'][0]}; quality from rep 1, "
                  f"speeds are medians; ratio = dml / PyTorch, difference = dml - PyTorch.", ""]
        section = None
        for sec, metric, a, b, diff in r["rows"]:
            if sec != section:
                lines += ["", f"**{sec}**", "", "| metric | dml | PyTorch | diff / ratio |",
                          "|---|---:|---:|---:|"]
                section = sec
            lines.append(f"| {metric} | {a} | {b} | {diff} |")
        lines += ["", "**targets**", "", "| target | value | result |", "|---|---:|---|"]
        for t in r["targets"]:
            v = t["value"]
            vs = "-" if v is None else (f"{v:+.2f} pts" if "pt" in t["target"] else f"{v:.3f}x")
            lines.append(f"| {t['target']} | {vs} | {t['status']} |")
        if r["notes"]:
            lines += [""] + [f"- {n}" for n in r["notes"]]
        lines.append("")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description="dml vs PyTorch on the FMNIST recipes")
    ap.add_argument("dirs", nargs="+", help="DML_DIRS TORCH_DIRS pairs (comma-separated reps)")
    ap.add_argument("--torch-other", action="append", default=[])
    ap.add_argument("--note", action="append", default=[], metavar="RECIPE=TEXT",
                    help="a line to print under a recipe's table")
    ap.add_argument("--load-before", default="")
    ap.add_argument("--load-after", default="")
    ap.add_argument("--json", default=os.path.join(ROOT, "bench", "results", "fmnist.json"))
    ap.add_argument("--md", default=os.path.join(ROOT, "bench", "results", "fmnist.md"))
    a = ap.parse_args()
    if len(a.dirs) % 2:
        ap.error("give the run directories in pairs: DML_DIRS TORCH_DIRS")
    others = [load(d) for d in a.torch_other]
    results = [compare_recipe(a.dirs[i].split(","), a.dirs[i + 1].split(","), others)
               for i in range(0, len(a.dirs), 2)]
    for n in a.note:
        recipe, _, text = n.partition("=")
        for r in results:
            if r["recipe"] == recipe:
                r["notes"].append(text)
    text = render(results, a.load_before, a.load_after)
    print(text)
    for path in (a.json, a.md):
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(a.json, "w") as f:
        json.dump({"load_before": a.load_before, "load_after": a.load_after,
                   "targets_definition": TARGETS, "recipes": results}, f, indent=1)
    with open(a.md, "w") as f:
        f.write(text + "\n")
    # a missed target is a result, not an error; inconsistent outputs are errors
    problems = sum(n.startswith("WARNING") for r in results for n in r["notes"])
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
