"""``--manifest FILE.json``: what a run wrote, checkable later without trusting file names.

The manifest holds the bigshuf version, the resolved seed (drawn or given; each epoch's with
--epochs), the options, every input (path as given, bytes and records read, digest of the bytes
read: the decompressed stream for a compressed input, so ``zcat in.gz | xxh128sum`` gives it)
and every output (path relative to the manifest's directory, split, shard, epoch, records,
plain bytes, digest of the plain bytes as written: ``zcat out.gz | xxh128sum``).

**Digest: XXH3-128** (``xxhash``, a dependency): ~25 GB/s on the dev machine against 1.3 GB/s
for SHA-256, which would have added ~0.8 s per GiB to a 2.6 s shuffle, on the one thread that
writes in order. It detects what a manifest is for (a missing, truncated, extended, altered or
swapped file, bit rot, a partial copy) with a 2^-128 chance of a miss. It is not a signature: a
person who can change the outputs on purpose can craft a collision (or edit the manifest); to
prove integrity against them, sign the manifest or hash the files with ``sha256sum``.

Digests are computed as bytes are read and written (no pass of their own): outputs are then
written in order (no positional writes), and the input method, which reads the inputs in
parallel pieces, steps aside for the engine (same bytes, see the order contract).

**Publication**: the outputs are complete and held under their temporary names; the manifest is
written under its own temporary name; then, with signals ignored, the outputs are renamed and
the manifest last, under one directory lock. A signal before that point (while the manifest is
being created, say) leaves nothing: no output, no manifest, exit 128+N. So a published output
set always has its manifest (short of SIGKILL or a power loss between the renames).
"""
from __future__ import annotations

import json
import os
import re
import stat
from dataclasses import dataclass, field, fields
from typing import Any, Callable, Dict, List, Optional, Tuple, cast

import xxhash

from bigshuf import __version__
from bigshuf.common.errors import (
    BigshufError,
    InputError,
    Interrupted,
    UsageError,
    describe_os_error,
    one_line,
)
from bigshuf.common.output import Destination, check_destination, file_key, write_all
from bigshuf.common.signals import SignalGuard
from bigshuf.shuffler.options import ShuffleOptions
from bigshuf.shuffler.records import open_input, read_fully
from bigshuf.shuffler.stats import ShuffleStats
from bigshuf.shuffler.writing import held, publish_all

#: The manifest format's version (a new one when a field changes meaning).
FORMAT = 1
DIGEST = "xxh3_128"
#: ShuffleStats fields holding one value per input, copied into each input's entry when the
#: run set them (the lead adds e.g. "taken" for --mix, "duplicates" for --unique).
PER_INPUT_STATS: Tuple[str, ...] = ("taken",)
#: ShuffleStats fields copied into the manifest's "run" section.
RUN_STATS: Tuple[str, ...] = ("records", "bytes", "records_out", "method", "duplicates")
#: Options not recorded (callbacks, and what has its own section).
_NOT_OPTIONS = {"inputs", "warn", "progress"}

RunOutputs = Callable[[ShuffleOptions], ShuffleStats]


def run_recorded(opts: ShuffleOptions, run_outputs: RunOutputs) -> ShuffleStats:
    """Run ``opts`` with ``run_outputs`` holding every output, write the manifest, then publish
    the outputs and the manifest together (see the module docstring)."""
    check_manifest(opts)
    sinks: List[Any] = []
    manifest: Optional[_ManifestFile] = None
    with SignalGuard() as signals:
        try:
            with held() as sinks:
                stats = run_outputs(opts)
            doc = manifest_document(opts, stats, sinks)
            manifest = _ManifestFile(opts.manifest, opts.fsync)
            manifest.write(doc)
            signals.defer()
            publish_all([*sinks, manifest])
        except BaseException:
            for s in sinks:
                s.abort()
            if manifest is not None:
                manifest.abort()
            raise
    return stats


def check_manifest(opts: ShuffleOptions) -> None:
    """Before any work: the manifest's directory exists and is writable, and it does not end at
    an input's file or the --random-source (by the file a write ends at, links followed: a
    symbolic link to an input is that input). The outputs are checked with it by the run
    (:func:`bigshuf.shuffler.run.run`: every output name of the run, the manifest's too)."""
    check_destination(opts.manifest)
    mine = file_key(opts.manifest)
    read = [*opts.inputs, opts.random_source]
    for p in read:
        if isinstance(p, (str, os.PathLike)) and os.fspath(p) != "-" \
                and os.path.realpath(os.fspath(p)) == mine:
            what = "the --random-source" if p is opts.random_source else "an input"
            raise UsageError(f"--manifest {opts.manifest} is {what} ({os.fspath(p)}): it "
                             "would be replaced")


def manifest_document(opts: ShuffleOptions, stats: ShuffleStats, sinks: List[Any]) -> Dict[str, Any]:
    """The manifest as a JSON-ready dict (see the module docstring)."""
    base = os.path.dirname(os.path.abspath(opts.manifest))
    inputs = []
    for i, entry in enumerate(stats.inputs):
        entry = dict(entry)
        for name in PER_INPUT_STATS:
            values = getattr(stats, name, None)
            if values is not None and len(values) == len(stats.inputs):
                entry[name] = values[i]
        inputs.append(entry)
    outputs = []
    for sink in sinks:
        for entry in sink_entries(sink):
            path = entry.pop("path")
            outputs.append({"path": None if path is None else os.path.relpath(os.path.abspath(path), base),
                            "split": entry.pop("split", None), "shard": entry.pop("shard"),
                            "epoch": getattr(sink, "epoch", None), **entry})
    return {"bigshuf_manifest": FORMAT, "bigshuf_version": __version__,
            "digest": DIGEST, "seed": stats.seed,
            "epoch_seeds": {str(e): s for e, s in stats.epoch_seeds.items()},
            "options": _options(opts), "run": {k: getattr(stats, k) for k in RUN_STATS},
            "inputs": inputs, "outputs": outputs}


def sink_entries(sink: Any) -> List[Dict[str, Any]]:
    """Every output of a Sink or SplitSink (a split's name with each of its files)."""
    if hasattr(sink, "sinks"):  # SplitSink
        return [dict(e, split=name) for name, s in zip(sink.names, sink.sinks)
                for e in s.output_entries()]
    return sink.output_entries()


def _options(opts: ShuffleOptions) -> Dict[str, Any]:
    def plain(v: Any) -> Any:
        if isinstance(v, bytes):
            return os.fsdecode(v)
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        if isinstance(v, (str, int, float, bool)) or v is None:
            return v
        return repr(v)
    return {f.name: plain(getattr(opts, f.name)) for f in fields(opts) if f.name not in _NOT_OPTIONS}


class _ManifestFile:
    """The manifest's destination, published with the outputs (Sink's publishing interface)."""

    def __init__(self, path: str, durable: bool = False):
        self.dest = Destination(path)  # a FIFO or device is written through, like -o
        self.durable = durable

    def write(self, doc: Dict[str, Any]) -> None:
        data = (json.dumps(doc, indent=1) + "\n").encode()
        try:
            write_all(self.dest.fd, data)
        except OSError as exc:
            raise describe_os_error(exc, f"writing {self.dest.path}") from None

    def destinations(self) -> List[Destination]:
        return [self.dest]

    def commit(self) -> None:
        self.dest.commit(self.durable)

    def release(self) -> None:
        pass

    def abort(self) -> None:
        self.dest.abort()


# -- bigshuf verify --manifest -----------------------------------------------------------------

@dataclass
class ManifestCheck:
    """What ``bigshuf verify --manifest`` found: one line per problem, and the totals."""

    problems: List[str] = field(default_factory=list)
    checked: int = 0
    skipped: int = 0   # outputs that were streams (stdout, a pipe): nothing to read back
    records: int = 0
    bytes: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        skipped = f", {self.skipped} stream output(s) not checkable" if self.skipped else ""
        return (f"{self.checked} output file(s), {self.records:,} records, {self.bytes:,} bytes: "
                f"all match the manifest{skipped}")


#: The largest manifest ``verify --manifest`` reads (JSON of ~300 bytes an output: about 900 000
#: outputs); a larger file, or a device that never ends, is refused without reading it whole.
MAX_MANIFEST = 256 << 20


def verify_manifest(path: str, read_bytes: int = 1 << 20,
                    max_bytes: int = MAX_MANIFEST) -> ManifestCheck:
    """Re-read every output file of the manifest at ``path`` (decompressed, strictly) and compare
    its size, digest and record count; a missing, truncated, extended or altered file is a
    problem. Reads are bounded: the manifest by ``max_bytes``, each output by the bytes it
    should hold plus one (a device or FIFO is not opened). A signal stops it (Interrupted)."""
    with SignalGuard():  # a signal is an interruption (exit 128+N), never a damaged file
        return _verify(path, load_manifest(path, max_bytes), read_bytes)


def _verify(path: str, doc: Dict[str, Any], read_bytes: int) -> ManifestCheck:
    outputs = doc["outputs"]
    base = os.path.dirname(os.path.abspath(path))
    sep = 0 if doc["options"].get("zero_terminated") else 10
    header = bool(doc["options"].get("header"))
    check = ManifestCheck()
    for out in outputs:
        if out["path"] is None or not out["file"]:
            check.skipped += 1
            continue
        problem = _check_output(os.path.join(base, out["path"]), out, read_bytes, sep, header)
        if problem:
            check.problems.append(problem)
        else:
            check.checked += 1
            check.records += out["records"]
            check.bytes += out["bytes"]
    return check


def load_manifest(path: str, max_bytes: int = MAX_MANIFEST) -> Dict[str, Any]:
    """The manifest at ``path``, read in at most ``max_bytes`` and checked against the schema
    once (so the rest may trust its types): InputError "not a bigshuf manifest: ..." if not."""
    try:
        with open(path, "rb") as f:
            data = f.read(max_bytes + 1)
    except FileNotFoundError:
        raise InputError("no such file", path) from None
    except OSError as exc:
        raise InputError(exc.strerror or str(exc), path) from None
    if len(data) > max_bytes:
        raise InputError(f"not a bigshuf manifest: larger than {max_bytes:,} bytes", path)
    try:
        doc = json.loads(data)
    except (ValueError, RecursionError) as exc:
        raise InputError(f"not a bigshuf manifest: {one_line(str(exc))[:200]}", path) from None
    problem = _schema_problem(doc)
    if problem is not None:
        raise InputError(f"not a bigshuf manifest: {problem}", path)
    return cast(Dict[str, Any], doc)


def _count(v: Any) -> bool:
    """A non-negative integer (not a bool)."""
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def _schema_problem(doc: Any) -> Optional[str]:
    """What makes ``doc`` not a manifest of this format, or None."""
    if not isinstance(doc, dict):
        return "not a JSON object"
    version = doc.get("bigshuf_manifest")
    if not _count(version) or version != FORMAT:
        return f"format {version!r}, this bigshuf reads format {FORMAT}"
    if doc.get("digest") != DIGEST:
        return f"digest {doc.get('digest')!r} is not {DIGEST}"
    if not isinstance(doc.get("options"), dict) or not isinstance(doc.get("outputs"), list):
        return "no options or outputs"
    seen = set()
    for i, out in enumerate(doc["outputs"]):
        where = f"output {i}"
        if not isinstance(out, dict):
            return f"{where} is not an object"
        path, file = out.get("path"), out.get("file")
        if not (path is None or (isinstance(path, str) and path)) or not isinstance(file, bool):
            return f"{where}: path must be a name or null, file true or false"
        if path is None and file:
            return f"{where}: a file with no path"
        if not _count(out.get("bytes")) or not _count(out.get("records")):
            return f"{where}: bytes and records must be non-negative integers"
        digest = out.get("digest")
        if file and not (isinstance(digest, str) and re.fullmatch(r"[0-9a-f]{32}", digest)):
            return f"{where}: digest must be 32 hex digits"
        if path is not None:
            key = os.path.normpath(path)
            if key in seen:
                return f"{path} is listed twice"
            seen.add(key)
    return None


def _check_output(path: str, out: Dict[str, Any], read_bytes: int, sep: int = 10,
                  header: bool = False) -> Optional[str]:
    """None if ``path`` holds what ``out`` says, else the one-line problem. At most the recorded
    bytes plus one are read (decompressed): a file that goes on is EXTRA BYTES, whatever it is."""
    want = out["bytes"]
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return f"MISSING {path}" if not os.path.lexists(path) else f"UNREADABLE {path}: a broken link"
    except OSError as exc:
        return f"UNREADABLE {path}: {exc.strerror or exc}"
    if not stat.S_ISREG(st.st_mode):  # a device or FIFO could block or never end
        return f"NOT A FILE {path}: the manifest lists a file"
    hasher = xxhash.xxh3_128()
    size = terminators = 0
    last = -1
    buf = bytearray(read_bytes)
    view = memoryview(buf)
    try:
        src = open_input(path)
        try:
            while size <= want:
                chunk = view[:min(len(view), want + 1 - size)]
                n = read_fully(src.stream, chunk, src.name)
                if n:
                    hasher.update(chunk[:n])
                    terminators += buf.count(sep, 0, n)
                    last = buf[n - 1]
                size += n
                if n < len(chunk):
                    break
        finally:
            src.close()
    except Interrupted:
        raise
    except BigshufError as exc:  # a truncated or corrupt compressed file, unreadable
        return f"DAMAGED {path}: {exc}"
    except OSError as exc:
        return f"UNREADABLE {path}: {exc.strerror or exc}"
    if size < want:
        return f"TRUNCATED {path}: {size:,} bytes, the manifest says {want:,}"
    if size > want:
        return f"EXTRA BYTES {path}: more than the {want:,} bytes the manifest says"
    if hasher.hexdigest() != out["digest"]:
        return f"ALTERED {path}: its content differs from the manifest's digest"
    records = terminators + (1 if size and last != sep else 0) - (1 if header and size else 0)
    if records != out["records"]:
        return f"RECORDS {path}: {records:,} records, the manifest says {out['records']:,}"
    return None
