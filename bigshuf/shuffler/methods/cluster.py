"""Scale-out: the same exact shuffle as a Dask task graph over shared (fsspec) storage.

A thin layer over the local engine — the same planner, keys, partition, unit plan, key order and
compressors — so for the same seed and inputs the output is byte-identical to ``bigshuf shuffle``
on one machine (at any ``--memory``: the order contract):

0. **count**: one task per input file counts its records, so each file's first record index
   (its records' keys) is known before any is scattered;
1. **scatter**: one task per input file (blocks never span files, and a record's key is a
   function of its index, so a task needs nothing from the others). It writes its runs to one
   part file and its index rows to another, under the job's temp directory;
2. the client merges the index to the final bucket count and plans units exactly like the local
   engine;
3. **gather**: one task per unit reads its buckets' pieces and keys from the part files, sorts
   them by key and writes the unit's shuffled bytes; a bucket too big for a unit is re-scattered inside its task
   by the local engine (worker-local temp space);
4. **publish**: one task per output file (shard) concatenates its units' bytes, cut at record
   boundaries, and publishes the file under its final name only when complete.

Every task writes to a name derived from its position in the plan, through a temporary name
moved into place at the end, so a retried task (Dask retries failed tasks and reruns those lost
with a worker) overwrites instead of duplicating. The job's temp directory is removed at the end
and on failure.
"""
from __future__ import annotations

import contextlib
import io
import os
import secrets
import tempfile
import time
from bisect import bisect_right
from dataclasses import dataclass
from typing import Any, BinaryIO, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from bigshuf.common.codecs import compression_of, compressor_for, open_decompressed
from bigshuf.common.cpus import usable_cpus
from bigshuf.common.errors import BigshufError, InputError, UsageError, warn_stderr
from bigshuf.common.output import Destination
from bigshuf.common.progress import Progress, bar
from bigshuf.common.randomness import Streams
from bigshuf.common.sizes import parse_size
from bigshuf.shuffler.engine import Engine
from bigshuf.shuffler.gather import BucketReader, Piece, Unit, order_unit, plan_units
from bigshuf.shuffler.methods.base import Job, Method, MethodName
from bigshuf.shuffler.options import ShuffleOptions
from bigshuf.shuffler.plan import Geometry, plan
from bigshuf.shuffler.records import RecordReader, Source, find_record_ends
from bigshuf.shuffler.scatter import KEY_BYTES, KeyRange, partition
from bigshuf.shuffler.split import split_outputs
from bigshuf.shuffler.stats import ShuffleStats
from bigshuf.shuffler.store import Store, final_buckets, fit_row, halvings
from bigshuf.shuffler.writing import Sink


def _require():
    try:
        import distributed  # noqa: F401
        import fsspec  # noqa: F401
    except ImportError:
        raise UsageError("--scheduler needs Dask: in bigshuf's clone, python -m pip install '.[dask]' "
                         "(bigshuf is not on a package index)") from None


def _fs(url: str):
    import fsspec
    fs, path = fsspec.core.url_to_fs(url)
    return fs, path


def _join(base: str, *parts: str) -> str:
    return "/".join([base.rstrip("/")] + list(parts))


def expand_inputs(inputs: Sequence[str]) -> List[str]:
    """fsspec URLs or paths; glob patterns expanded in sorted order (like a shell)."""
    import fsspec
    out: List[str] = []
    for item in inputs:
        if str(item) == "-":
            raise UsageError("--scheduler reads files or URLs, not stdin")
        fs, path = fsspec.core.url_to_fs(str(item))
        protocol = item.split("://", 1)[0] + "://" if "://" in str(item) else ""
        if any(c in path for c in "*?["):
            matches = sorted(fs.glob(path))
            if not matches:
                raise InputError("no file matches this pattern", str(item))
            out.extend(protocol + m if protocol and not m.startswith(protocol) else m for m in matches)
            continue
        if not fs.exists(path):
            raise InputError("no such file", str(item))
        if fs.isdir(path):
            raise InputError("is a directory", str(item))
        if not protocol and not os.path.isfile(path):  # a pipe, /dev/stdin, <(cmd): read once
            raise UsageError(f"{item}: --scheduler reads regular files or URLs, not pipes or devices")
        out.append(str(item))
    return out


def _private(fs, path: str, mode: int) -> None:
    """Temp data keeps a private input private whatever the umask: 0600 files in a 0700 job
    directory (local storage; an object store's access is its own)."""
    import fsspec.implementations.local

    if isinstance(fs, fsspec.implementations.local.LocalFileSystem):
        os.chmod(path, mode)


def _put_atomic(fs, path: str, data_writer) -> None:
    """Write a file through a temporary name and move it into place (retries overwrite)."""
    tmp = f"{path}.tmp-{secrets.token_hex(4)}"
    try:
        with fs.open(tmp, "wb") as f:
            _private(fs, tmp, 0o600)
            data_writer(f)
        fs.mv(tmp, path)
    except BaseException:
        try:
            fs.rm(tmp)
        except Exception:
            pass
        raise


# -- tasks (run on workers; module-level so they pickle by reference) --------------------------

@contextlib.contextmanager
def _open_input(url: str) -> Iterator[BinaryIO]:
    """An input on shared storage, decompressed by extension with the strict readers every
    local run uses (a truncated or corrupt stream is an input error, never a shorter shuffle)."""
    import fsspec

    with fsspec.open(url, "rb") as raw:
        codec = compression_of(url)
        stream = open_decompressed(raw, codec, url) if codec else raw
        try:
            yield stream
        finally:
            if stream is not raw:
                stream.close()


def _count_task(url: str, sep: int, header: bool, block_bytes: int, block_records: int) -> int:
    """The number of records of one input file (its header excluded)."""
    with _open_input(url) as stream:
        reader = RecordReader([Source(url, stream, None, False, None, owned=False)], sep,
                              header=header)
        for _ in reader.blocks(block_bytes, block_records):
            pass
    return reader.records


def _scatter_task(source: int, url: str, job: str, seed: int, buckets: int, sep: int,
                  header: bool, block_bytes: int, block_records: int, first: int) -> dict:
    """Scatter one input file (its records numbered from ``first``) into runs: part file +
    index file. Returns its summary."""
    fs, _ = _fs(job)
    part = _join(job, "runs", f"{source:06d}.bin")
    index = _join(job, "runs", f"{source:06d}.idx.npz")
    sizes: List[int] = []
    rows_b: List[np.ndarray] = []
    rows_c: List[np.ndarray] = []
    keys_of = Streams(seed).keys
    cut = KeyRange.cut(0, 1 << 64, buckets)
    with _open_input(url) as stream:
        reader = RecordReader([Source(url, stream, None, False, None, owned=False)], sep,
                              header=header, first_source=source, first_record=first)

        def write_runs(f) -> None:
            out = np.empty(block_bytes, dtype=np.uint8)
            for block in reader.blocks(block_bytes, block_records):
                keys = keys_of.range(block.first, block.count)
                b, c, keys = partition(block.data, block.ends, keys, cut.bucket_of(keys), buckets, out)
                f.write(memoryview(out[:block.nbytes]))
                f.write(memoryview(keys.view(np.uint8)))
                sizes.append(block.nbytes + KEY_BYTES * block.count)
                rows_b.append(b)
                rows_c.append(c)

        _put_atomic(fs, part, write_runs)
    k = buckets
    mb = np.array(rows_b, dtype=np.int64).reshape(-1, k)
    mc = np.array(rows_c, dtype=np.int64).reshape(-1, k)

    def write_index(f) -> None:
        buf = io.BytesIO()
        np.savez(buf, bytes=mb, counts=mc, sizes=np.array(sizes, dtype=np.int64))
        f.write(buf.getvalue())

    _put_atomic(fs, index, write_index)
    return dict(source=source, runs=len(sizes), nbytes=int(mb.sum()),
                records=int(mc.sum()), header=reader.header, read=reader.bytes_read)


class PartsStore(Store):
    """The runs of all part files as one address space: part f starts at ``bases[f]``."""

    kind = "parts"

    def __init__(self, paths: Sequence[str], bases: Sequence[int]):
        self.paths = list(paths)
        self.bases = list(bases)
        self._open: Dict[int, Any] = {}

    def _file(self, i: int):
        f = self._open.get(i)
        if f is None:
            fs, path = _fs(self.paths[i])
            f = fs.open(path, "rb")
            self._open[i] = f
        return f

    def read_into(self, offset: int, views) -> None:
        i = bisect_right(self.bases, offset) - 1
        f = self._file(i)
        f.seek(offset - self.bases[i])
        for v in views:
            mv = memoryview(v)
            got = 0
            while got < len(mv):
                data = f.read(len(mv) - got)
                if not data:
                    raise BigshufError(f"temporary part {self.paths[i]} is truncated")
                mv[got:got + len(data)] = data
                got += len(data)

    def close(self) -> None:
        for f in self._open.values():
            try:
                f.close()
            except Exception:
                pass
        self._open.clear()


def _unit_path(job: str, i: int) -> str:
    return _join(job, "units", f"{i:08d}.bin")


def _gather_task(i: int, unit: Unit, reader: BucketReader, space: KeyRange,
                 parts: List[str], bases: List[int], job: str, seed: int, sep: int,
                 memory: int) -> int:
    """Sort one unit (or re-scatter an oversized bucket) into its unit file. ``reader`` holds
    the unit's columns of the index; ``space`` is the keys of the unit's first bucket."""
    fs, _ = _fs(job)
    store = PartsStore(parts, bases)
    reader.store = store
    try:
        if not unit.oversized:
            buf = np.empty(unit.nbytes, dtype=np.uint8)
            keys = np.empty(unit.records, dtype=np.uint64)
            reader.read(0, unit.last - unit.first, buf, keys)
            out = np.empty(unit.nbytes, dtype=np.uint8)
            n = order_unit(buf, unit.nbytes, keys, sep, out)
            del buf, keys
            _put_atomic(fs, _unit_path(job, i), lambda f: f.write(memoryview(out)))
            return n
        geo = plan(memory)
        engine = Engine(geo, 1, Streams(seed), sep, tempfile.gettempdir(), Progress(False, None),
                        ShuffleStats(seed=seed))
        pieces: List[Piece] = reader.pieces(0)

        def write(f) -> None:
            sink = Sink(f, sep, unit.records)
            sink.open()
            engine.rescatter(store, pieces, space, sink)
            sink.finish()

        try:
            _put_atomic(fs, _unit_path(job, i), write)
        finally:
            engine.close()
        return unit.records
    finally:
        store.close()


def _publish_task(dest: str, header: bytes, sep: int, pieces: List[Tuple[str, int, int]],
                  records: int, memory: int) -> int:
    """Write one output file from unit files: for each (unit path, first record, end record),
    that record range of the unit. Published under its name only once complete."""
    fs, path = _fs(dest)

    def write(f) -> None:
        comp = compressor_for(path, f, memory)
        stream = comp if comp is not None else f
        if header:
            stream.write(header)
        for upath, a, b in pieces:
            ufs, up = _fs(upath)
            data = np.frombuffer(ufs.cat_file(up), dtype=np.uint8)
            if a == 0 and b == -1:
                stream.write(memoryview(data))
                continue
            ends = find_record_ends(data, sep)
            lo = 0 if a == 0 else int(ends[a - 1])
            hi = int(ends[b - 1]) if b > 0 else 0
            stream.write(memoryview(data[lo:hi]))
        if comp is not None:
            comp.close()

    _publish_file(fs, path, write)
    return records


def _publish_file(fs, path: str, data_writer) -> None:
    """A user-visible output: on the local file system through bigshuf.common.output (the same
    rules as a local run: devices written through, links followed, mode kept, private temp);
    elsewhere through a temporary name and a move."""
    if "file" not in _protocols(fs):
        _put_atomic(fs, path, data_writer)
        return
    dest = Destination(path)
    try:
        with os.fdopen(dest.fd, "wb", closefd=False) as f:
            data_writer(f)
        dest.commit()
    except BaseException:
        dest.abort()
        raise


def _protocols(fs) -> Tuple[str, ...]:
    protocol = fs.protocol
    return (protocol,) if isinstance(protocol, str) else tuple(protocol)


# -- planning --------------------------------------------------------------------------------

@dataclass(frozen=True)
class ClusterPlan:
    """What a cluster run of an input of ``input_bytes`` will do (estimates before reading)."""

    input_bytes: int
    memory: int                 # per worker task
    input_files: int
    runs: int
    buckets: int
    bucket_bytes: int
    scatter_tasks: int
    gather_tasks: int
    levels: int
    shared_temp_bytes: int      # run parts + unit parts, on --temp-dir
    worker_temp_bytes: int      # per re-scattering task, on the worker's local disk
    index_bytes: int            # the merged index held by the client


def plan_cluster(input_bytes: int, memory: "int | str", input_files: int,
                 buckets: Optional[int] = None) -> ClusterPlan:
    """Estimate a run with the planner the engine uses (:func:`bigshuf.shuffler.plan.plan`, the index
    halving of :func:`bigshuf.shuffler.store.final_buckets`, the unit size): runs ~ input / block size,
    one scatter task per input file, one gather task per unit (or per oversized bucket)."""
    geo: Geometry = plan(parse_size(memory))
    per_file = -(-input_bytes // max(1, input_files))
    runs = max(1, input_files * -(-per_file // geo.block_bytes))
    k0 = buckets or geo.initial_buckets()
    k = k0 if buckets else final_buckets(k0, runs, geo.index_entries)
    bucket = -(-input_bytes // k)
    oversized = bucket > geo.unit_bytes
    gather = k if oversized else max(1, -(-input_bytes // geo.unit_bytes))
    return ClusterPlan(
        input_bytes=input_bytes, memory=geo.memory, input_files=input_files, runs=runs,
        buckets=k, bucket_bytes=bucket, scatter_tasks=input_files, gather_tasks=gather,
        levels=2 if oversized else 1, shared_temp_bytes=2 * input_bytes,
        worker_temp_bytes=bucket if oversized else 0, index_bytes=runs * k * 32)


# -- client side -----------------------------------------------------------------------------

@dataclass
class _Progress:
    """Waits for a phase's tasks with a bar of finished tasks."""

    enabled: Optional[bool]

    def track(self, client, futures, desc: str):
        """Wait for ``futures`` (re-raising the first error), with a bar of finished tasks."""
        from distributed import as_completed

        tasks = bar(len(futures), desc, self.enabled, unit="task")
        results = {}
        try:
            for fut in as_completed(futures):
                results[fut.key] = fut.result()
                tasks.update(1)
        finally:
            tasks.close()
        return [results[f.key] for f in futures]


def _client(scheduler: str, workers: Optional[int]):
    from distributed import Client, LocalCluster
    if scheduler == "local" or scheduler.startswith("local:"):
        n = int(scheduler.split(":", 1)[1]) if ":" in scheduler else (workers or usable_cpus())
        # ":0": any free port. (None still asks for 8787 and, when another cluster has it,
        # Dask prints a three-line warning.)
        cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                               dashboard_address=":0")
        return Client(cluster), cluster
    return Client(scheduler), None


class Cluster(Method):
    """--scheduler: the engine's phases as Dask tasks."""

    name = MethodName.CLUSTER

    @classmethod
    def applies(cls, job: Job) -> Optional[str]:
        return None if job.opts.scheduler is None else "--scheduler given"

    def reads_inputs(self) -> bool:
        return False  # the tasks read them, on the workers

    def run(self) -> ShuffleStats:
        self.job.stats = shuffle_on_cluster(self.job.opts, self.job.geo, self.job.stats.seed)
        return self._done()


def shuffle_on_cluster(opts: ShuffleOptions, geo: Geometry, seed: int) -> ShuffleStats:
    """Run a shuffle on a Dask cluster. ``opts.scheduler`` is a scheduler address, a
    ``distributed.Client``, or ``"local"``/``"local:N"`` for a local cluster of N processes.
    Inputs, output and ``temp_dir`` are paths or fsspec URLs; ``temp_dir`` must be storage every
    worker can read and write. Same seed, inputs, memory and buckets: same bytes as the local
    engine (the streams of bigshuf.common.randomness are keyed by data position only)."""
    _require()
    urls = expand_inputs(list(opts.inputs))
    temp_root = opts.temp_dir or tempfile.gettempdir()
    own_client = not hasattr(opts.scheduler, "submit")
    client, cluster = _client(opts.scheduler, opts.jobs) if own_client else (opts.scheduler, None)
    run = _ClusterRun(opts, geo, seed, urls, client,
                      _join(temp_root, f"bigshuf-{os.getpid()}-{secrets.token_hex(6)}"),
                      ShuffleStats(seed=seed, store="cluster temporary storage " + temp_root,
                                   workers=len(client.scheduler_info().get("workers", ())) or 1))
    fs_job, _ = _fs(run.job)
    try:
        for d in (run.job, _join(run.job, "runs"), _join(run.job, "units")):
            fs_job.makedirs(d, exist_ok=True)
            _private(fs_job, d, 0o700)
        header, index = run.scatter()
        t1 = time.perf_counter()
        units = run.gather(*index)
        run.publish(units, header)
        run.stats.gather_seconds = time.perf_counter() - t1
        return run.stats
    except BaseException as exc:
        if isinstance(exc, (BigshufError, KeyboardInterrupt)):
            raise
        raise BigshufError(f"cluster run failed: {type(exc).__name__}: {exc}") from exc
    finally:
        try:
            if fs_job.exists(run.job):
                fs_job.rm(run.job, recursive=True)
        except Exception:
            pass
        if own_client:
            client.close()
            if cluster is not None:
                cluster.close()


@dataclass
class _ClusterRun:
    """The three task phases of one cluster run (scatter, gather, publish)."""

    opts: ShuffleOptions
    geo: Geometry
    seed: int
    urls: List[str]
    client: Any
    job: str
    stats: ShuffleStats

    def _key(self, phase: str, i: int) -> str:
        return f"bigshuf-{phase}-{i}-{self.job[-12:]}"

    def scatter(self) -> Tuple[Optional[bytes], tuple]:
        """One task per input file; returns the header and the merged run index."""
        opts, geo, t0 = self.opts, self.geo, time.perf_counter()
        k0 = opts.buckets or geo.initial_buckets()
        futs = [self.client.submit(_count_task, u, opts.sep, opts.header, geo.block_bytes,
                                   geo.block_records, key=self._key("count", i), retries=3, pure=False)
                for i, u in enumerate(self.urls)]
        counts = _Progress(opts.progress).track(self.client, futs, "count")
        firsts = np.cumsum([0] + counts[:-1]).tolist()
        futs = [self.client.submit(_scatter_task, i, u, self.job, self.seed, k0, opts.sep, opts.header,
                                   geo.block_bytes, geo.block_records, first,
                                   key=self._key("scatter", i), retries=3, pure=False)
                for i, (u, first) in enumerate(zip(self.urls, firsts))]
        summaries = _Progress(opts.progress).track(self.client, futs, "scatter")
        headed = [s for s in summaries if s["header"] is not None]  # empty inputs have none
        hdr = headed[0]["header"] if opts.header and headed else None
        for s in headed[1:]:
            if opts.header and s["header"] != hdr:
                (opts.warn or warn_stderr)(f"{self.urls[s['source']]}: first line differs from the "
                                           "header of the first input; dropped anyway")
        runs = sum(s["runs"] for s in summaries)
        k = k0 if opts.buckets else final_buckets(k0, runs, geo.index_entries)
        index = _load_index(self.job, summaries, k) \
            + (KeyRange.cut(0, 1 << 64, k0).merged(halvings(k0, k)),)
        st = self.stats
        st.records = sum(s["records"] for s in summaries)
        st.bytes = sum(s["nbytes"] for s in summaries)
        st.runs, st.buckets, st.levels = runs, k, 1
        st.scatter_seconds = time.perf_counter() - t0
        return hdr, index

    def gather(self, offsets, piece_bytes, piece_records, parts, bases, space: KeyRange
               ) -> List[Unit]:
        """One task per unit of buckets (an oversized bucket is re-scattered inside its task)."""
        geo = self.geo
        reader = BucketReader(None, offsets, piece_bytes, piece_records)  # type: ignore[arg-type]
        units = plan_units(piece_bytes.sum(axis=0), piece_records.sum(axis=0), geo.unit_bytes,
                           geo.unit_records)
        futs = [self.client.submit(_gather_task, i, u, reader.columns(u.first, u.last),
                                   space.child(u.first), parts, bases, self.job, self.seed,
                                   self.opts.sep, geo.memory, key=self._key("gather", i), retries=3,
                                   pure=False)
                for i, u in enumerate(units)]
        _Progress(self.opts.progress).track(self.client, futs, "gather")
        if any(u.oversized for u in units):
            self.stats.levels = 2
        return units

    def publish(self, units: List[Unit], header: Optional[bytes]) -> None:
        """One task per output file: the shuffled stream (units in order) cut by record counts,
        like Sink (and per split with --split)."""
        opts = self.opts
        if opts.split is not None:
            paths, quota = split_outputs(opts, self.stats.records, checking=False)
        else:
            sink = Sink.for_options(opts, self.stats.records)
            paths, quota = [p for p in sink.paths if p is not None], sink.quota
        plans = _publish_plan(units, quota, self.job)
        futs = [self.client.submit(_publish_task, dest, header or b"", opts.sep, pieces, n,
                                   self.geo.memory, key=self._key("publish", j), retries=3, pure=False)
                for j, (dest, (pieces, n)) in enumerate(zip(paths, plans))]
        _Progress(opts.progress).track(self.client, futs, "publish")
        self.stats.records_out = self.stats.records
        self.stats.outputs = list(paths)


def _load_index(job: str, summaries: List[dict], k: int):
    """Read every scatter task's index rows, merged to ``k`` buckets, and lay the part files
    out in one address space (part f at bases[f])."""
    fs, _ = _fs(job)
    offsets: List[int] = []
    rows_b: List[np.ndarray] = []
    rows_c: List[np.ndarray] = []
    parts: List[str] = []
    bases: List[int] = []
    base = 0
    for s in summaries:
        src = s["source"]
        parts.append(_join(job, "runs", f"{src:06d}.bin"))
        bases.append(base)
        with fs.open(_join(job, "runs", f"{src:06d}.idx.npz"), "rb") as f:
            z = np.load(io.BytesIO(f.read()))
            sizes, mb, mc = z["sizes"], z["bytes"], z["counts"]
        pos = base
        for r in range(len(sizes)):
            offsets.append(pos)
            rows_b.append(fit_row(mb[r], k))
            rows_c.append(fit_row(mc[r], k))
            pos += int(sizes[r])
        base = pos
    pb = np.array(rows_b, dtype=np.int64).reshape(-1, k)
    pc = np.array(rows_c, dtype=np.int64).reshape(-1, k)
    return np.array(offsets, dtype=np.int64), pb, pc, parts, bases


def _publish_plan(units: List[Unit], quota: List[int], job: str):
    """For each output file, the (unit file, first record, end record) pieces it is made of,
    end -1 meaning the whole unit, and its record count."""
    plans = []
    u = 0
    used = 0  # records of units[u] already assigned
    for q in quota:
        pieces = []
        left = q
        while left > 0 and u < len(units):
            n = units[u].records - used
            take = min(n, left)
            whole = used == 0 and take == units[u].records
            pieces.append((_unit_path(job, u), used, -1 if whole else used + take))
            used += take
            left -= take
            if used == units[u].records:
                u += 1
                used = 0
        plans.append((pieces, q))
    return plans
