"""--epochs: E independent uniform shuffles, each reproducible on its own (epoch_seed), written
one file per epoch ({epoch}) or one after the other; and the statistics of the epochs' orders
(fixed seeds, chi-square at alpha = 1e-4, with mutations that reuse the seed or correlate the
epochs caught)."""
from __future__ import annotations

import gzip
import io
import itertools
import os
from collections import Counter

import numpy as np
import pytest
from helpers import invoke, numbered_file, one_line_error
from scipy import stats

import bigshuf
from bigshuf.common import randomness
from bigshuf.common.errors import BigshufError, UsageError
from bigshuf.common.randomness import OrderKeys, epoch_seed
from bigshuf.shuffler import epochs as epochs_module
from bigshuf.shuffler import run as run_module

ALPHA = 1e-4


def _order(seed: int, epoch: int, n: int) -> tuple:
    """Epoch ``epoch``'s output order of ``n`` records under the contract: the records sorted by
    the keys of the epoch's seed (randomness.epoch_seed looked up now, so a mutation shows)."""
    keys = OrderKeys(randomness.epoch_seed(seed, epoch)).range(0, n)
    return tuple(int(i) for i in np.argsort(keys))


def _perm_p(orders) -> float:
    """Chi-square p-value of the observed permutations against the uniform law."""
    orders = list(orders)
    n = len(orders[0])
    counts = Counter(orders)
    cells = [counts.get(p, 0) for p in itertools.permutations(range(n))]
    return stats.chisquare(cells).pvalue


def _joint_p(first, second) -> float:
    """Chi-square p-value of the pairs (order in one epoch, order in another), seed by seed,
    against the uniform law on pairs of permutations: independent uniform epochs make every
    pair equally likely."""
    perms = list(itertools.permutations(range(len(first[0]))))
    counts = Counter(zip(first, second))
    return stats.chisquare([counts.get((p, q), 0) for p in perms for q in perms]).pvalue


def _transposed(order: tuple, rng: np.random.Generator) -> tuple:
    """A mutation: another epoch made from ``order`` with one random swap (each epoch alone is
    still uniform; the epochs are strongly correlated)."""
    out = list(order)
    i, j = rng.choice(len(out), 2, replace=False)
    out[i], out[j] = out[j], out[i]
    return tuple(out)


def test_each_epoch_is_uniform():
    for epoch in (1, 7):  # 100 expected in each of the 24 cells
        p = _perm_p(_order(s, epoch, 4) for s in range(2400))
        assert p > ALPHA, (epoch, p)


def test_epochs_are_independent_and_the_mutations_are_caught(monkeypatch):
    seeds = range(1800)  # 50 expected in each of the 36 cells
    orders = {e: [_order(s, e, 3) for s in seeds] for e in (0, 1, 2)}
    for a, b in ((0, 1), (1, 2), (0, 2)):
        assert _joint_p(orders[a], orders[b]) > ALPHA, (a, b)
    # Mutation 1, the seed reused: every epoch is epoch 0.
    with monkeypatch.context() as m:
        m.setattr(randomness, "epoch_seed", lambda seed, epoch: seed)
        assert _joint_p(orders[0], [_order(s, 1, 3) for s in seeds]) < ALPHA
    # Mutation 2, correlated epochs that are each uniform: the marginal passes, the joint not.
    rng = np.random.default_rng(5)
    swapped = [_transposed(o, rng) for o in orders[0]]
    assert _perm_p(swapped) > ALPHA
    assert _joint_p(orders[0], swapped) < ALPHA


def test_positions_are_uncorrelated_between_epochs():
    """Pairwise: the output position of each record in epoch 0 and in epoch 1 (n = 10) have a
    correlation within 4 standard errors of 0 over 2000 seeds, record by record."""
    n, seeds = 10, range(2000)
    pos = {e: np.array([np.argsort(_order(s, e, n)) for s in seeds]) for e in (0, 1)}
    for r in range(n):
        corr = np.corrcoef(pos[0][:, r], pos[1][:, r])[0, 1]
        assert abs(corr) < 4 / np.sqrt(len(seeds)), (r, corr)


def test_epoch_seeds_never_repeat_a_seed_or_each_other():
    """epoch_seed(s, e) for e > 0 is unrelated to s: no collision with nearby base seeds (a
    'seed + e' derivation would make epoch 1 of seed 7 the plain run of seed 8)."""
    derived = [epoch_seed(s, e) for s in range(500) for e in range(1, 5)]
    assert len(set(derived)) == len(derived)
    assert not set(derived) & set(range(10_000))
    assert all(epoch_seed(s, 0) == s for s in range(50))
    assert all(0 <= d < 1 << 63 for d in derived)


def test_epochs_are_made_as_they_run(tmp_path, monkeypatch):
    """--epochs E made all E option sets (and kept every epoch's stats) before the first line:
    --epochs 1000000000 -n 1 grew by 1.4 KB an epoch and wrote nothing. Now the first epoch
    runs after one seed is drawn, the stats do not grow, and -v lists 20 seeds."""
    src = numbered_file(tmp_path / "in.txt", 3)
    drawn, at_first_run = [], []
    real_seed = epochs_module.epoch_seed
    monkeypatch.setattr(epochs_module, "epoch_seed", lambda s, e: drawn.append(e) or real_seed(s, e))
    real_run = run_module.run

    def run(opts):
        at_first_run.append(len(drawn))
        return real_run(opts)
    monkeypatch.setattr(run_module, "run", run)
    out = io.BytesIO()
    stats = bigshuf.shuffle(src, out, seed=2, epochs=1000, sample=1)
    assert at_first_run[:3] == [0, 1, 3]  # the outer run, then each epoch after its own seed
    assert len(at_first_run) >= 1000 and stats.records_out == 1000
    assert len(stats.epoch_seeds) == 1000 and stats.epoch_seeds[999] == real_seed(2, 999)
    assert "... (980 more)" in stats.summary() and len(out.getvalue().splitlines()) == 1000


def test_the_budget_is_checked_once_for_the_options_given(tmp_path, monkeypatch):
    """Each epoch's own options carry the budget as a number, as if given: they were warned
    about (--memory 84M does not fit ...) when a spool had taken room, without any -S. The
    check is made once, for the options as given; -v's budget note stays for epochs."""
    from bigshuf.shuffler import options as options_module
    asked = []
    monkeypatch.setattr(run_module, "budget_warning", lambda m: asked.append(m))
    monkeypatch.setattr(options_module, "default_budget", lambda d, v=None: (64 << 20, "capped"))
    src = numbered_file(tmp_path / "in.txt", 20)
    stats = bigshuf.shuffle(src, io.BytesIO(), epochs=3, seed=1, memory="32M")
    assert asked == [32 << 20]
    stats = bigshuf.shuffle(src, io.BytesIO(), epochs=3, seed=1)
    assert asked == [32 << 20] and stats.budget == "capped"


def test_the_runs_follow_the_contract_and_a_reused_seed_is_caught(tmp_path, monkeypatch):
    """The whole shuffle, one output: epoch e's lines are the keys' order of epoch_seed(S, e)."""
    src = numbered_file(tmp_path / "in.txt", 7)
    lines = src.read_bytes().splitlines(keepends=True)

    def expected(seed: int) -> bytes:
        return b"".join(lines[i] for e in range(3) for i in _order(seed, e, 7))

    def ran(seed: int) -> bytes:
        out = io.BytesIO()
        bigshuf.shuffle(src, out, seed=seed, epochs=3)
        return out.getvalue()

    for seed in range(12):
        assert ran(seed) == expected(seed)
    monkeypatch.setattr(epochs_module, "epoch_seed", lambda seed, epoch: seed)
    assert any(ran(seed) != expected(seed) for seed in range(12))


def test_one_file_per_epoch_each_reproducible_alone(tmp_path):
    src = numbered_file(tmp_path / "in.txt", 500)
    r = invoke(["shuffle", src, "--epochs", "3", "--seed", "7", "-o", tmp_path / "ep{epoch:02d}.txt"])
    assert r.returncode == 0, r.stderr
    files = [tmp_path / f"ep{e:02d}.txt" for e in range(3)]
    assert all(f.exists() for f in files) and len({f.read_bytes() for f in files}) == 3
    plain = invoke(["shuffle", src, "--seed", "7"]).stdout
    assert files[0].read_bytes() == plain  # epoch 0 is the plain run of the seed
    again = invoke(["shuffle", src, "--seed", "7", "--first-epoch", "2", "--epochs", "1",
                    "-o", tmp_path / "again{epoch}.txt"])
    assert again.returncode == 0 and (tmp_path / "again2.txt").read_bytes() == files[2].read_bytes()
    by_seed = invoke(["shuffle", src, "--seed", str(epoch_seed(7, 1))]).stdout
    assert by_seed == files[1].read_bytes()
    both = bigshuf.shuffle(src, tmp_path / "py{epoch}.txt", seed=7, epochs=2, first_epoch=1)
    assert (tmp_path / "py1.txt").read_bytes() == files[1].read_bytes()
    assert (tmp_path / "py2.txt").read_bytes() == files[2].read_bytes()
    assert both.epoch_seeds == {1: epoch_seed(7, 1), 2: epoch_seed(7, 2)} and both.seed == 7


def test_one_output_is_the_epochs_in_turn(tmp_path):
    src = numbered_file(tmp_path / "in.txt", 300)
    one = [invoke(["shuffle", src, "--seed", "3", "--first-epoch", str(e), "--epochs", "1"]).stdout
           for e in range(3)]
    r = invoke(["shuffle", src, "--epochs", "3", "--seed", "3"])  # stdout
    assert r.returncode == 0 and r.stdout == b"".join(one)
    bigshuf.shuffle(src, tmp_path / "all.txt.gz", seed=3, epochs=3)
    assert gzip.decompress((tmp_path / "all.txt.gz").read_bytes()) == b"".join(one)
    sample = invoke(["shuffle", src, "--epochs", "3", "--seed", "3", "-n", "5"]).stdout
    assert sample == b"".join(b"".join(o.splitlines(keepends=True)[:5]) for o in one)
    # Shards cut the whole stream, across the epochs' boundaries.
    bigshuf.shuffle(src, tmp_path / "s.txt", seed=3, epochs=3, shards=4)
    shards = sorted(tmp_path.glob("s-*-of-00004.txt"))
    assert len(shards) == 4 and b"".join(p.read_bytes() for p in shards) == b"".join(one)
    assert {len(p.read_bytes().splitlines()) for p in shards} == {225}


def test_stdin_is_copied_once_and_read_by_every_epoch(tmp_path):
    src = numbered_file(tmp_path / "in.txt", 200)
    from_file = invoke(["shuffle", src, "--epochs", "3", "--seed", "4"]).stdout
    r = invoke(["shuffle", "--epochs", "3", "--seed", "4", "-T", tmp_path], input=src.read_bytes())
    assert r.returncode == 0 and r.stdout == from_file
    assert sorted(os.listdir(tmp_path)) == ["in.txt"]  # the copy was unlinked from the start


@pytest.mark.parametrize("extra", [["-u"], ["--mix", "1,1"]])
def test_unique_or_mix_epochs_copy_stdin_once(tmp_path, monkeypatch, extra):
    """-u (and --mix) read each epoch's inputs twice: an epoch's reading of the spool is read
    again, not copied to a second spool (a full copy per epoch, before)."""
    from bigshuf.shuffler import rereading
    copies = []
    real = rereading._copy_into
    monkeypatch.setattr(rereading, "_copy_into", lambda *a: copies.append(1) or real(*a))
    src = numbered_file(tmp_path / "in.txt", 200)
    other = [] if extra[0] == "-u" else [str(numbered_file(tmp_path / "b.txt", 50))]
    args = ["shuffle", *extra, "--epochs", "3", "--seed", "4", "-n", "150"]
    from_file = invoke(args + other + [str(src)]).stdout
    assert copies == []
    r = invoke(args + other + ["-"], input=src.read_bytes())
    assert r.returncode == 0 and r.stdout == from_file and copies == [1]


def test_header_once_per_file_and_epochs_with_split(tmp_path):
    src = numbered_file(tmp_path / "in.txt", 40, header=b"h\n")
    out = invoke(["shuffle", src, "--header", "--epochs", "2", "--seed", "1"]).stdout
    assert out.startswith(b"h\n") and out.count(b"h\n") == 1 and len(out.splitlines()) == 81
    for e in (0, 1):
        (tmp_path / str(e)).mkdir()
    r = invoke(["shuffle", src, "--header", "--epochs", "2", "--seed", "1", "--split",
                "a=0.5,b=rest", "-o", tmp_path / "{epoch}" / "{split}.txt"])
    assert r.returncode == 0, r.stderr
    for e in (0, 1):
        a, b = ((tmp_path / str(e) / f"{n}.txt").read_bytes() for n in "ab")
        assert a.startswith(b"h\n") and b.startswith(b"h\n")
        assert sorted(a.splitlines()[1:] + b.splitlines()[1:]) == sorted(src.read_bytes().splitlines()[1:])
        alone = invoke(["shuffle", src, "--header", "--seed", str(epoch_seed(1, e)), "--split",
                        "a=0.5,b=rest", "-o", tmp_path / f"x{e}-{{split}}.txt"])
        assert alone.returncode == 0 and (tmp_path / f"x{e}-a.txt").read_bytes() == a


def test_aligned_epochs_share_each_epochs_permutation(tmp_path):
    en = numbered_file(tmp_path / "en.txt", 50)
    de = tmp_path / "de.txt"
    de.write_bytes(b"".join(b"d%d\n" % i for i in range(50)))
    (tmp_path / "out").mkdir()
    bigshuf.shuffle([en, de], tmp_path / "out" / "{epoch}-{name}", aligned=True, seed=2, epochs=2)
    for e in (0, 1):
        a = (tmp_path / "out" / f"{e}-en.txt").read_bytes().splitlines()
        b = (tmp_path / "out" / f"{e}-de.txt").read_bytes().splitlines()
        assert [b"d" + x for x in a] == b
    assert (tmp_path / "out" / "0-en.txt").read_bytes() != (tmp_path / "out" / "1-en.txt").read_bytes()


def test_no_epoch_is_published_unless_all_are(tmp_path, monkeypatch):
    src = numbered_file(tmp_path / "in.txt", 30)
    real = run_module.run
    calls = []

    def failing(opts):
        calls.append(opts)
        if len(calls) == 3:  # the driver, epoch 0, then epoch 1 fails
            raise BigshufError("disk on fire")
        return real(opts)

    monkeypatch.setattr(run_module, "run", failing)
    with pytest.raises(BigshufError):
        bigshuf.shuffle(src, tmp_path / "e{epoch}.txt", seed=1, epochs=3)
    assert sorted(os.listdir(tmp_path)) == ["in.txt"]


@pytest.mark.parametrize("args,needle", [
    (["--epochs", "0"], "--epochs must be at least 1"),
    (["-o", "x{epoch}.txt"], "{epoch} names the outputs of --epochs"),
    (["--epochs", "2", "--split", "a=0.5,b=rest", "-o", "{split}.txt"], "needs {epoch}"),
    (["--epochs", "2", "-r", "-n", "3"], "not available with -r"),
    (["--epochs", "2", "-o", "x{epoch:s}.txt"], "integer format"),
    (["--first-epoch", "-1"], "must not be negative"),
])
def test_bad_epoch_options(tmp_path, args, needle, monkeypatch):
    monkeypatch.chdir(tmp_path)
    src = numbered_file(tmp_path / "in.txt", 5)
    r = invoke(["shuffle", src, *args], input=b"a\n")
    one_line_error(r, 2, needle)
    assert sorted(os.listdir(tmp_path)) == ["in.txt"]


def test_epoch_names_must_differ(tmp_path):
    src = numbered_file(tmp_path / "in.txt", 5)
    for e in (0, 1):
        (tmp_path / f"e{e}").mkdir()
    with pytest.raises(UsageError, match="not distinct"):
        bigshuf.shuffle(src, f"{tmp_path}/e{{epoch}}/../same.txt", epochs=2)
    assert not (tmp_path / "same.txt").exists()


def test_one_epoch_again_with_its_splits(tmp_path):
    """--first-epoch e --epochs 1 with --split needs no {epoch}: epoch e's splits, alone."""
    src = numbered_file(tmp_path / "in.txt", 60)
    r = invoke(["shuffle", src, "--seed", "7", "--first-epoch", "2", "--split", "a=0.5,b=rest",
                "-o", tmp_path / "{split}.txt"])
    assert r.returncode == 0, r.stderr
    epoch2 = invoke(["shuffle", src, "--seed", str(epoch_seed(7, 2))]).stdout
    assert (tmp_path / "a.txt").read_bytes() + (tmp_path / "b.txt").read_bytes() == epoch2


def test_a_signal_while_a_read_once_input_is_copied_leaves_nothing(tmp_path):
    """A FIFO nobody writes: the run blocks copying it for the epochs; SIGTERM ends it at once,
    with no output and no temporary file."""
    import signal
    import subprocess

    from helpers import leftovers, spawn
    from test_signals import _wait_blocked_opening_a_fifo

    fifo = tmp_path / "p"
    os.mkfifo(fifo)
    proc = spawn(["shuffle", fifo, "--epochs", "2", "-T", tmp_path, "-o", tmp_path / "e{epoch}.txt"])
    _wait_blocked_opening_a_fifo(proc.pid)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=30)
    one_line_error(subprocess.CompletedProcess(proc.args, proc.returncode, out, err), 143, "SIGTERM")
    assert sorted(os.listdir(tmp_path)) == ["p"] and not leftovers(tmp_path)
