"""Make prediction files from a real (small) model, not synthetic Dirichlet noise.

Why: bigshuf's CAN and threshold defaults were tuned on generated probabilities, and real model
outputs (miscalibrated, overconfident, with a model prior far from the label frequencies) behaved
differently (issue 22). This script needs no download: it trains a numpy softmax classifier on
text every machine has -- windows of the Python standard library's own source -- to guess which
module a window comes from (the 40 largest top-level modules or packages). Each file is split by
position: its first 40% feeds training, the next 30% dev, the last 30% test, so no
window of dev or test overlaps a training window.

    python scripts/gen_real_predictions.py bench-data/real            # dev, test, shifted tests
    python scripts/gen_real_predictions.py bench-data/real --dev-rows 100000 --test-rows 90000

Writes ``dev.jsonl`` and ``test.jsonl`` (``{"probs": [...], "label": k}``), ``train_labels.txt``
(the training labels, for ``--prior``), ``classes.txt``, and ``shift{1..5}.jsonl``: test rows
resampled so that 5 random classes hold 60% of the rows (label shift with a known answer).
"""
from __future__ import annotations

import argparse
import os
import re
import sys
import sysconfig
import time
import zlib
from pathlib import Path
from typing import Dict, List, Tuple

import numpy as np
import orjson

N_CLASSES = 40
DIM = 1 << 15
WINDOW = 160          # bytes of source per row (starting after a space)
TOKEN = re.compile(rb"[A-Za-z_]+|\d+|[^\sA-Za-z_\d]")


def stdlib_files() -> Dict[str, List[Path]]:
    """Source files of the standard library by top-level module (tests and site-packages left out)."""
    root = Path(sysconfig.get_paths()["stdlib"])
    groups: Dict[str, List[Path]] = {}
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root).parts
        if rel[0] in ("site-packages", "dist-packages", "test", "tests", "idlelib", "lib2to3") or \
                any(p in ("test", "tests") for p in rel):
            continue
        name = rel[0][:-3] if rel[0].endswith(".py") else rel[0]
        groups.setdefault(name, []).append(path)
    return groups


def windows(data: bytes, stride: int) -> List[bytes]:
    out = []
    pos = 0
    while pos + WINDOW <= len(data):
        out.append(data[pos:pos + WINDOW])
        nxt = data.find(b" ", pos + stride)
        if nxt < 0:
            break
        pos = nxt + 1
    return out


def features(texts: List[bytes]):  # -> scipy.sparse.csr_matrix
    """Hashed token unigrams and bigrams, log-scaled counts, rows of unit length."""
    from scipy import sparse

    indptr, indices = [0], []
    for t in texts:
        toks = TOKEN.findall(t)
        hashed = [zlib.crc32(w) for w in toks] + [zlib.crc32(a + b" " + b) for a, b in zip(toks, toks[1:])]
        indices.extend(h & (DIM - 1) for h in hashed)
        indptr.append(len(indices))
    data = np.ones(len(indices), dtype=np.float32)
    x = sparse.csr_matrix((data, np.array(indices), np.array(indptr)), shape=(len(texts), DIM))
    x.sum_duplicates()
    x.data = np.log1p(x.data)
    norms = np.sqrt(np.asarray(x.multiply(x).sum(axis=1)).ravel())
    return sparse.diags(1 / np.maximum(norms, 1e-9)) @ x


def softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def train(x, y: np.ndarray, epochs: int, seed: int) -> np.ndarray:
    """Minibatch Adam on the softmax cross-entropy, no regularisation: the model ends up
    overconfident, as real classifiers do."""
    rng = np.random.default_rng(seed)
    w = np.zeros((DIM, N_CLASSES), dtype=np.float32)
    b = np.zeros(N_CLASSES, dtype=np.float32)
    m_w, v_w = np.zeros_like(w), np.zeros_like(w)
    step, lr = 0, 0.02
    for _ in range(epochs):
        order = rng.permutation(x.shape[0])
        for s in range(0, len(order), 2048):
            idx = order[s:s + 2048]
            xb, yb = x[idx], y[idx]
            p = softmax(np.asarray(xb @ w) + b)
            p[np.arange(len(idx)), yb] -= 1
            p /= len(idx)
            g = np.asarray(xb.T @ p)
            b -= lr * p.sum(axis=0)
            step += 1
            m_w = 0.9 * m_w + 0.1 * g
            v_w = 0.999 * v_w + 0.001 * g * g
            w -= lr * (m_w / (1 - 0.9 ** step)) / (np.sqrt(v_w / (1 - 0.999 ** step)) + 1e-8)
    return np.concatenate([w, b[None, :]])


def predict(params: np.ndarray, x) -> np.ndarray:
    return softmax(np.asarray(x @ params[:-1]) + params[-1]).astype(np.float64)


def split_rows(groups: Dict[str, List[Path]], classes: List[str]) -> Dict[str, Tuple[List[bytes], List[int]]]:
    """Windows of each class's files: first 40% -> train, next 30% -> dev, rest -> test."""
    out: Dict[str, Tuple[List[bytes], List[int]]] = {s: ([], []) for s in ("train", "dev", "test")}
    for label, name in enumerate(classes):
        for path in groups[name]:
            data = path.read_bytes()
            cuts = [0, 4 * len(data) // 10, 7 * len(data) // 10, len(data)]
            for part, (a, z) in zip(("train", "dev", "test"), zip(cuts, cuts[1:])):
                rows = windows(data[a:z], 24 if part == "train" else 12)
                out[part][0].extend(rows)
                out[part][1].extend([label] * len(rows))
    return out


def write_jsonl(path: Path, probs: np.ndarray, labels: np.ndarray) -> None:
    with open(path, "wb") as f:
        for p, y in zip(probs, labels):
            f.write(orjson.dumps({"probs": [round(float(v), 6) for v in p], "label": int(y)}) + b"\n")


def shifted(probs: np.ndarray, labels: np.ndarray, rng: np.random.Generator, rows: int,
            share: float = 0.6, boosted: int = 5) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows resampled (with replacement) so ``boosted`` random classes hold ``share`` of them and
    the rest keep their relative frequencies; returns rows, labels and the true prior."""
    m = probs.shape[1]
    base = np.bincount(labels, minlength=m).astype(float)
    big = rng.choice(np.flatnonzero(base > 0), boosted, replace=False)
    prior = base.copy()
    prior[big] = 0
    prior = prior / prior.sum() * (1 - share)
    prior[big] = share * base[big] / base[big].sum()
    counts = rng.multinomial(rows, prior)
    idx = np.concatenate([rng.choice(np.flatnonzero(labels == c), k) for c, k in enumerate(counts) if k])
    idx = idx[rng.permutation(len(idx))]
    return probs[idx], labels[idx], prior


def main(argv: List[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--dev-rows", type=int, default=100_000)
    ap.add_argument("--test-rows", type=int, default=90_000)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    t0 = time.time()
    rng = np.random.default_rng(args.seed)
    groups = stdlib_files()
    size = {k: sum(p.stat().st_size for p in v) for k, v in groups.items()}
    classes = sorted(sorted(size, key=lambda k: -size[k])[:N_CLASSES])
    parts = split_rows(groups, classes)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "classes.txt").write_text("".join(c + "\n" for c in classes))
    texts, y = parts["train"]
    x = features(texts)
    y_train = np.array(y)
    print(f"train: {x.shape[0]} windows, features in {time.time() - t0:.0f} s", file=sys.stderr)
    params = train(x, y_train, args.epochs, args.seed)
    with open(args.out / "train_labels.txt", "w") as f:
        f.writelines(f"{v}\n" for v in y_train)
    for part, want in (("dev", args.dev_rows), ("test", args.test_rows)):
        texts, y = parts[part]
        pick = rng.choice(len(texts), min(want, len(texts)), replace=False)  # in random order, as a
        # dump of a shuffled eval set; bench_predict_real.py makes the label-sorted case itself
        probs = predict(params, features([texts[i] for i in pick]))
        labels = np.array(y)[pick]
        write_jsonl(args.out / f"{part}.jsonl", probs, labels)
        acc = float((probs.argmax(axis=1) == labels).mean())
        print(f"{part}: {len(labels)} rows, accuracy {acc:.2%}", file=sys.stderr)
        if part == "test":
            for s in range(1, 6):
                p, lab, prior = shifted(probs, labels, np.random.default_rng(args.seed + s), len(labels))
                write_jsonl(args.out / f"shift{s}.jsonl", p, lab)
                (args.out / f"shift{s}.prior.json").write_bytes(orjson.dumps(prior.tolist()))
    print(f"done in {time.time() - t0:.0f} s -> {os.fspath(args.out)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
