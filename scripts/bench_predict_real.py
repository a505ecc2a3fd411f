"""The two tables of issue 22 on a real model's predictions (``scripts/gen_real_predictions.py``).

1. Label shift: on test sets where 5 classes were resampled to hold 60% of the rows, accuracy of
   argmax, CAN with the training prior, CAN with the prior estimated by EM (``--prior estimate``)
   and by BBSE (``estimate-bbse``), the plain prior shift with the EM estimate (``--method
   prior-shift``), and CAN with the true test prior (the oracle). Dev is the reference.
2. Small or sorted dev sets: ``can --tune`` and ``threshold`` (class weights) tuned on 50/200/1000
   dev rows -- a random sample, or the head of the dev file sorted by label -- then applied to the
   test set, against leaving the predictions unchanged (argmax). The defaults must never lose more
   than noise.

    python scripts/gen_real_predictions.py bench-data/real
    python scripts/bench_predict_real.py bench-data/real            # ~100 s on 2 cores

Both tables use the library calls the commands use (``bigshuf.can`` / ``bigshuf.threshold`` on
files for tuning, so the safety rules are the commands'; CAN applied in memory to the test rows).
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import List

import numpy as np

import bigshuf
from bigshuf.predict.can import can_matrix
from bigshuf.predict.priors import bbse_prior, em_prior
from bigshuf.predict.reading import read_predictions


def load(path: Path):
    d = read_predictions(path)
    return d.values / d.values.sum(axis=1, keepdims=True), d.labels


def acc(probs: np.ndarray, y: np.ndarray) -> float:
    return float((probs.argmax(axis=1) == y).mean())


def shift_table(root: Path, dev: np.ndarray, y_dev: np.ndarray, train_prior: np.ndarray) -> None:
    m = dev.shape[1]
    ref = dev
    confusion = np.bincount(dev.argmax(axis=1) * m + y_dev, minlength=m * m).reshape(m, m)
    print("\nTable 1: label shift (5 classes resampled to 60% of the test rows); accuracy on test, %")
    print(f"{'test set':<9} {'argmax':>7} {'CAN train':>9} {'CAN EM':>7} {'CAN BBSE':>8} {'shift EM':>8} "
          f"{'oracle':>7}  EM iterations")
    for s in range(1, 6):
        probs, y = load(root / f"shift{s}.jsonl")
        true = np.array(json.loads((root / f"shift{s}.prior.json").read_text()))
        em, iters, _ = em_prior(probs, dev.mean(axis=0))
        bbse = bbse_prior(confusion, np.bincount(probs.argmax(axis=1), minlength=m))
        w = em / dev.mean(axis=0)
        shifted = probs * w
        row = [acc(probs, y)]
        for prior in (train_prior, em, bbse):
            row.append(acc(can_matrix(probs, prior, reference=ref)[0], y))
        row.append(acc(shifted, y))
        row.append(acc(can_matrix(probs, true, reference=ref)[0], y))
        print(f"shift{s:<4} " + " ".join(f"{100 * v:{w_}.2f}" for v, w_ in zip(row, (7, 9, 7, 8, 8, 7))) +
              f"  {iters}")


def small_dev_table(root: Path, dev: np.ndarray, y_dev: np.ndarray, test: np.ndarray, y_test: np.ndarray,
                    sizes: List[int], draws: int) -> None:
    base = acc(test, y_test)
    order_sorted = np.argsort(y_dev, kind="stable")
    print(f"\nTable 2: tuned on few dev rows, applied to test (argmax on test: {100 * base:.2f}%); "
          "points vs argmax, one entry per draw ('=' kept unchanged)")
    print(f"{'rows':>5} {'order':<8} {'can --tune':<34} {'threshold (weights)':<34}")
    worst = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        for n in sizes:
            for order in ("shuffled", "sorted"):
                can_cells, thr_cells = [], []
                for d in range(draws):
                    rng = np.random.default_rng(100 * n + d)
                    if order == "shuffled":
                        idx = rng.choice(len(y_dev), n, replace=False)
                    else:  # the head of the dev file sorted by label (classes in a random order)
                        rank = rng.permutation(dev.shape[1])[y_dev]
                        idx = np.argsort(rank, kind="stable")[:n] if d else order_sorted[:n]
                    path = Path(tmp) / f"dev-{n}-{order}-{d}.jsonl"
                    path.write_text("".join(json.dumps({"probs": p.tolist(), "label": int(c)}) + "\n"
                                            for p, c in zip(dev[idx], y_dev[idx])))
                    can_cells.append(_can_cell(path, test, y_test, base, tmp))
                    thr_cells.append(_threshold_cell(path, test, y_test, base))
                worst = min(worst, *[c[0] for c in can_cells + thr_cells])
                print(f"{n:>5} {order:<8} {_cells(can_cells):<34} {_cells(thr_cells):<34}")
    print(f"worst change on test: {100 * worst:+.2f} points")


def _can_cell(path: Path, test: np.ndarray, y_test: np.ndarray, base: float, tmp: str):
    params = Path(tmp) / "can.json"
    bigshuf.can(path, tune=True, save_params=params, progress=False)
    saved = json.loads(params.read_text())
    if saved.get("unchanged"):
        return 0.0, True
    out, _ = can_matrix(test, saved["prior"], tau=saved["tau"], alpha=saved["alpha"],
                        iterations=saved["iterations"], k=saved["k"], rule=saved["rule"])
    return acc(out, y_test) - base, False


def _threshold_cell(path: Path, test: np.ndarray, y_test: np.ndarray, base: float):
    report = bigshuf.threshold(path)
    params = report.params
    if params.get("unchanged"):
        return 0.0, True
    return acc(test * np.asarray(params["weights"]), y_test) - base, False


def _cells(cells) -> str:
    return " ".join("=" if kept else f"{100 * g:+.1f}" for g, kept in cells)


def main(argv: List[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("root", type=Path, help="directory written by gen_real_predictions.py")
    ap.add_argument("--sizes", default="50,200,1000")
    ap.add_argument("--draws", type=int, default=2)
    ap.add_argument("--skip-shift", action="store_true")
    args = ap.parse_args(argv)
    t0 = time.time()
    dev, y_dev = load(args.root / "dev.jsonl")
    test, y_test = load(args.root / "test.jsonl")
    train = np.array([int(v) for v in (args.root / "train_labels.txt").read_text().split()])
    train_prior = np.bincount(train, minlength=dev.shape[1]) / len(train)
    if not args.skip_shift:
        shift_table(args.root, dev, y_dev, train_prior)
    small_dev_table(args.root, dev, y_dev, test, y_test, [int(v) for v in args.sizes.split(",")], args.draws)
    print(f"\n({time.time() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
