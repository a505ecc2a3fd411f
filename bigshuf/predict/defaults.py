"""Defaults and choices of the prediction commands, in one place.

The library modules, the options objects and the CLI's --help all read them from here (this
module imports nothing heavy, so ``bigshuf --help`` does not load numpy).
"""
from __future__ import annotations

DEFAULT_SEED = 0  # subsampling and cross-validation folds are seeded: same seed, same result
DEFAULT_MEMORY = "1G"  # like bigshuf shuffle's: peak RSS of can/threshold stays within it (+ the interpreter)

# CAN (bigshuf can)
DEFAULT_TAU = 0.9
DEFAULT_ALPHA = 1.0
DEFAULT_ITERATIONS = 1
DEFAULT_K = 3
RULES = ("top-k", "any-k")
"""Uncertainty rules: ``top-k`` (the blog's: top-k entropy >= tau for the one given k) and
``any-k`` (the official KMnP/can code's: top-j entropy >= tau for ANY j from 2 to the number
of classes; k is then not used)."""
DEFAULT_RULE = "top-k"
DEFAULT_MAX_REFERENCE = 100_000
SUBSAMPLES = ("uniform", "stratified")
DEFAULT_SUBSAMPLE = "uniform"
DEFAULT_FOLDS = 5
ADJUSTMENTS = ("can", "prior-shift")
"""``can``: CAN on the uncertain rows; ``prior-shift``: every row re-weighted by target prior /
model prior (the plain Bayes correction for label shift, Saerens et al. 2002)."""
DEFAULT_ADJUSTMENT = "can"
ESTIMATES = ("estimate", "estimate-bbse")
"""``--prior`` values that estimate the test prior: EM on the adjusted file from the model's
effective prior on the reference file (Saerens et al. 2002), or BBSE (Lipton et al. 2018) from
the reference's confusion matrix (needs labels in the reference)."""

# CAN tuning grid: the official code's alpha in {0.1 .. 0.9, 1 .. 9} and 1-4 iterations, a few
# tau and k, and both uncertainty rules.
GRID_ALPHAS = tuple(round(0.1 * i, 1) for i in range(1, 10)) + tuple(float(i) for i in range(1, 10))
GRID_ITERATIONS = (1, 2, 3, 4)
GRID_TAUS = (0.5, 0.7, 0.8, 0.9, 0.95)
GRID_KS = (2, 3, 5)
GRID_RULES = RULES
SEARCHES = ("halving", "exhaustive", "exact")
DEFAULT_SEARCH = "halving"

# Thresholds (bigshuf threshold)
DEFAULT_METRIC = "accuracy"
DEFAULT_POSITIVE = 1  # binary data: the positive class index
DEFAULT_MULTILABEL_METRIC = "f1"

# Files
FORMATS = ("jsonl", "csv", "tsv", "npy")
PRED_KEY = "pred"
"""Key (JSONL) or column (CSV) under which the predicted class is written."""
