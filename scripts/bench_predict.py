#!/usr/bin/env python3
"""Benchmark of the prediction tools at the sizes of issue 12, each number printed beside its target.

Generates (seeded) imbalanced predictions shaped like a realistic dev set: classes with Zipf
frequencies, a model biased against the frequent classes, ~17% uncertain rows at tau 0.9, k 3.
Then times, as a user would run them (``python -m bigshuf`` in a subprocess, JSONL files):

1. ``can --tune`` with default settings (successive halving, 5-fold CV) on 100k x 40 -- target
   <= 60 s -- and compares the held-out gain of its winner with the winner of the full grid
   scored on every row (``--search exhaustive``): both are applied with exact CAN to a separate
   100k-row test file, dev as reference; target: within 0.2 accuracy points.
2. ``threshold`` (multi-class weights, default 5-fold CV) on 100k x 40 -- target <= 20 s -- and
   its dev score against the previous implementation (exact coordinate ascent with basin
   hopping, loaded from git) and scipy's Powell (if installed): target >= the previous one.
3. 200k x 100 JSONL (and CSV, and .npy for scale) through ``can`` (alpha 1, 1 iteration), in + out
   -- target <= 6 s for JSONL.
4. CAN at 100k x 100, alpha 1, 3 iterations, against the time of its matrix products alone (the
   bound of the factored form) -- target <= 1.5x.

Wall time depends on what else runs on the machine, so CPU time (user + sys) and the load
average are printed too. Usage: python scripts/bench_predict.py [--skip-slow] [--only 1,2,3,4]
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import orjson

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bigshuf.predict.can import CanModel, confident_mask  # noqa: E402


def make(n: int, m: int, seed: int, boost: float = 8.5):
    """Probabilities, labels and the class prior: Zipf classes, a model biased against them."""
    rng = np.random.default_rng(seed)
    prior = 1.0 / np.arange(1, m + 1)
    prior /= prior.sum()
    y = rng.choice(m, n, p=prior)
    logits = rng.normal(0, 1.0, (n, m))
    logits[np.arange(n), y] += rng.gamma(2.0, boost / 2, n)
    logits -= 0.4 * np.log(prior * m)[None, :]  # trained on balanced data: frequent classes under-predicted
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    return p / p.sum(axis=1, keepdims=True), y, prior


def write_jsonl(path: Path, probs: np.ndarray, y: np.ndarray) -> None:
    with open(path, "wb") as f:
        for i, (p, label) in enumerate(zip(probs.tolist(), y.tolist())):
            f.write(orjson.dumps({"id": i, "probs": p, "label": label}) + b"\n")


def write_csv(path: Path, probs: np.ndarray, y: np.ndarray) -> None:
    m = probs.shape[1]
    with open(path, "w") as f:
        f.write("id," + ",".join(f"prob_c{j}" for j in range(m)) + ",label\n")
        for i, (p, label) in enumerate(zip(probs.tolist(), y.tolist())):
            f.write(f"{i}," + ",".join(map(repr, p)) + f",{label}\n")


def bigshuf(*args: object) -> tuple:
    """Run the CLI; returns (wall s, cpu s, completed process)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "bigshuf", *map(str, args)], capture_output=True,
                          env=dict(os.environ, PYTHONPATH=str(REPO)))
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        sys.exit(f"bigshuf {' '.join(map(str, args))} failed: {proc.stderr.decode()}")
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime), proc


def line(what: str, value: str, target: str, ok: bool) -> None:
    print(f"  {what:<58} {value:<28} target {target:<14} {'OK' if ok else 'MISSED'}", flush=True)


def load() -> str:
    return "load average " + " ".join(f"{x:.1f}" for x in os.getloadavg())


def held_out_gain(d: Path, params: Path, name: str) -> float:
    wall, _, proc = bigshuf("can", d / "test.jsonl", "--params", params, "--reference", d / "dev.jsonl",
                            "-o", d / f"fixed-{name}.jsonl", "--report", d / f"report-{name}.json", "-q")
    acc = json.loads((d / f"report-{name}.json").read_text())["accuracy"]["overall"]
    print(f"    {name} params applied exactly to the held-out test file in {wall:.1f} s: "
          f"{100 * acc['before']:.2f}% -> {100 * acc['after']:.2f}%")
    return acc["after"] - acc["before"]


def bench_tune(d: Path, skip_slow: bool) -> None:
    print(f"\n1. can --tune, default settings, 100k x 40 JSONL ({load()})")
    wall, cpu, proc = bigshuf("can", d / "dev.jsonl", "--tune", "--prior", d / "train_labels.txt",
                              "--save-params", d / "halving.json")
    print("    " + "\n    ".join(proc.stderr.decode().splitlines()[-3:]))
    line("wall time (CPU time)", f"{wall:.1f} s ({cpu:.1f} s CPU)", "<= 60 s", wall <= 60)
    wall_x, cpu_x, _ = bigshuf("can", d / "dev.jsonl", "--tune", "--prior", d / "train_labels.txt", "--search",
                               "exhaustive", "--cv", "0", "--save-params", d / "exhaustive.json", "-q")
    print(f"    full grid on every row (--search exhaustive --cv 0): {wall_x:.1f} s ({cpu_x:.1f} s CPU)")
    h, x = (json.loads((d / f).read_text()) for f in ("halving.json", "exhaustive.json"))
    keys = ("tau", "alpha", "iterations", "k", "rule")
    print(f"    winners: halving {[h[k] for k in keys]}, exhaustive {[x[k] for k in keys]}")
    gain_h = held_out_gain(d, d / "halving.json", "halving")
    gain_x = gain_h if all(h[k] == x[k] for k in keys) else held_out_gain(d, d / "exhaustive.json", "exhaustive")
    line("held-out gain: halving vs exhaustive grid", f"{100 * gain_h:+.2f} vs {100 * gain_x:+.2f} points",
         ">= -0.2 points", gain_h >= gain_x - 0.002)


def previous_find_class_weights():
    """find_class_weights as it was before issue 12 (commit ed1565d), loaded from git."""
    src = subprocess.run(["git", "-C", str(REPO), "show", "ed1565d:bigshuf/predict/thresholds.py"],
                         capture_output=True, text=True)
    if src.returncode != 0:
        return None
    # the search part only (the file's command part imports modules that have moved since)
    code = src.stdout.split("# -- params")[0].replace(
        "from bigshuf.predict.formats import Layout, PredictionFile, PredictionWriter, read_json\n", "")
    namespace: dict = {"__name__": "previous_thresholds"}
    exec(compile(code, "previous_thresholds.py", "exec"), namespace)  # noqa: S102
    return namespace["find_class_weights"]


def bench_threshold(d: Path, skip_slow: bool) -> None:
    print(f"\n2. threshold (multi-class weights, 5-fold CV), 100k x 40 JSONL ({load()})")
    wall, cpu, proc = bigshuf("threshold", d / "dev.jsonl", "--save-params", d / "weights.json")
    print("    " + "\n    ".join(proc.stderr.decode().splitlines()))
    line("wall time (CPU time)", f"{wall:.1f} s ({cpu:.1f} s CPU)", "<= 20 s", wall <= 20)
    ours = json.loads((d / "weights.json").read_text())["dev"]["after"]
    if skip_slow:
        return
    probs, y, _ = make(100_000, 40, 0)
    old = previous_find_class_weights()
    if old is not None:
        t0 = time.perf_counter()
        _, before = old(probs, y, "accuracy")
        print(f"    previous exact coordinate ascent (from git): {100 * before:.3f}% in {time.perf_counter() - t0:.0f} s")
        line("dev accuracy vs the previous search", f"{100 * ours:.3f}% vs {100 * before:.3f}%", ">= previous",
             ours >= before - 1e-12)
    try:
        from scipy.optimize import minimize
    except ImportError:
        print("    (scipy not installed: no Powell comparison)")
        return
    t0 = time.perf_counter()
    res = minimize(lambda t: -((probs * np.abs(t)).argmax(axis=1) == y).mean(), np.ones(40), method="Powell")
    print(f"    scipy Powell (the blog's method): {100 * -res.fun:.3f}% in {time.perf_counter() - t0:.0f} s")


def bench_io(d: Path) -> None:
    print(f"\n3. 200k x 100 through can (alpha 1, 1 iteration), in + out ({load()})")
    probs, y, _ = make(200_000, 100, 3)
    write_jsonl(d / "big.jsonl", probs, y)
    write_csv(d / "big.csv", probs, y)
    np.save(d / "big.npy", probs)
    for name, target in (("big.jsonl", 6.0), ("big.csv", None), ("big.npy", None)):
        out = d / ("out-" + name)
        wall, cpu, _ = bigshuf("can", d / name, "-o", out, "--prior", "uniform", "-q")
        size = (d / name).stat().st_size / 1e6
        if target:
            line(f"{name} ({size:.0f} MB)", f"{wall:.1f} s ({cpu:.1f} s CPU)", f"<= {target:g} s", wall <= target)
        else:
            print(f"  {name + f' ({size:.0f} MB)':<58} {wall:.1f} s ({cpu:.1f} s CPU)")


def bench_iterations() -> None:
    print(f"\n4. CAN at 100k x 100, alpha 1, 3 iterations, against its matrix products ({load()})")
    probs, _, _ = make(100_000, 100, 5, boost=7.0)
    conf = confident_mask(probs, 0.9, 3)
    ref, rows = probs[conf], probs[~conf]
    q = np.full(100, 0.01)
    model = CanModel(ref, q, 1.0, 3)
    t0 = time.perf_counter()
    model.adjust(rows)
    total = time.perf_counter() - t0
    batch = max(1, model.batch_bytes // (8 * len(ref) + 8 * 4 * 100))
    lbar1 = ref * (q / ref.sum(axis=0))  # the reference rows' own trajectory (alpha 1)
    lbar1 /= lbar1.sum(axis=1, keepdims=True)
    lbar2 = lbar1 * (q / lbar1.sum(axis=0))
    lbar2 /= lbar2.sum(axis=1, keepdims=True)
    buf = np.empty((batch, len(ref)))
    t0 = time.perf_counter()
    for start in range(0, len(rows), batch):  # the same products on the same shapes, nothing else
        b = rows[start:start + batch]
        for lbar in (lbar1, lbar2):
            x = np.matmul(b, lbar.T, out=buf[:len(b)])
            x @ lbar
    bound = time.perf_counter() - t0
    print(f"    {len(ref)} reference rows, {len(rows)} uncertain rows, batches of {batch}")
    line("CAN time / matrix products alone", f"{total:.1f} s / {bound:.1f} s = {total / bound:.2f}x",
         "<= 1.5x", total / bound <= 1.5)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", default="1,2,3,4", help="which benchmarks (comma list of 1-4)")
    ap.add_argument("--skip-slow", action="store_true", help="skip the previous search and scipy Powell (minutes)")
    ap.add_argument("--dir", default=None, help="where to put the generated files (default: a temp dir)")
    args = ap.parse_args()
    only = {int(v) for v in args.only.split(",")}
    with tempfile.TemporaryDirectory(prefix="bench-predict-", dir=args.dir) as tmp:
        d = Path(tmp)
        if only & {1, 2}:
            probs, y, prior = make(100_000, 40, 0)
            test, ytest, _ = make(100_000, 40, 1)
            write_jsonl(d / "dev.jsonl", probs, y)
            write_jsonl(d / "test.jsonl", test, ytest)
            train = np.random.default_rng(2).choice(40, 200_000, p=prior)
            (d / "train_labels.txt").write_text("\n".join(map(str, train)) + "\n")
            unc = 1 - confident_mask(probs, 0.9, 3).mean()
            print(f"dev/test: 100000 x 40, {100 * unc:.1f}% uncertain at tau 0.9, k 3; accuracy "
                  f"{100 * (probs.argmax(axis=1) == y).mean():.2f}%; largest class {100 * prior[0]:.1f}%, "
                  f"smallest {100 * prior[-1]:.2f}%")
        if 1 in only:
            bench_tune(d, args.skip_slow)
        if 2 in only:
            bench_threshold(d, args.skip_slow)
        if 3 in only:
            bench_io(d)
        if 4 in only:
            bench_iterations()


if __name__ == "__main__":
    main()
