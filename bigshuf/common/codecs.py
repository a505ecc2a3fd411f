"""Compressed inputs and outputs, chosen by file extension (.gz .bz2 .xz .lzma .zst).

Reading is *strict*, the same for every codec: a compressed input must end exactly at the end of
a complete stream (several concatenated streams are fine, as ``zcat`` and ``zstd -d`` read them).
A truncated or corrupt stream, or trailing bytes that are not another complete stream, is an
:class:`InputError` naming the file (exit 2) -- never a shorter shuffle. An empty file holds no
records. Python's own readers are lenient in places (bz2 and xz ignore trailing garbage,
zstandard's stream reader stops quietly inside a truncated frame and, by default, after the first
frame), hence the checks here.

Speed: decompression runs in a background thread (the codecs release the GIL), so it overlaps the
shuffle's own work; gzip goes through ISA-L (``isal``, ~3x zlib for decompression and ~5x for
compression at its level 2), and .gz and .zst outputs are compressed by two threads of the
codec's own (ISA-L's pigz-like blocks, zstd's jobs), which run beside the gather workers
instead of inside the ordered write. Outputs stay deterministic: the same records give the same
compressed bytes whatever the number of threads or workers and however the writes are cut. See README "Benchmarks" for the measurements behind these choices.
"""
from __future__ import annotations

import contextlib
import io
import os
import queue
import threading
from dataclasses import dataclass
from typing import Any, BinaryIO, Callable, Dict, Iterable, Iterator, Optional

from bigshuf.common.errors import InputError, UsageError

#: Bytes of compressed input per read, and of decompressed output per prefetched chunk (small:
#: the chunks in flight count against the memory bound, which is tight at small --memory).
READ_SIZE = 256 << 10
#: Decompressed chunks the background thread may hold ahead of the reader.
PREFETCH = 4
#: zstd level and worker threads for .zst outputs. Any threads >= 1 gives the same bytes.
ZSTD_LEVEL = 3
ZSTD_THREADS = 2
#: zstd job sizes: its minimum, and the largest used. Larger jobs keep both threads busier (1 GiB
#: of JSON on 2 cores: 3.8 s with 512 KiB jobs, 2.9 s with 2 MiB, 2.55 s with 4 MiB) but cost
#: RSS, about ZSTD_RSS_PER_JOB_BYTE times the job (5 MiB at 512 KiB, 14 MiB at 2 MiB, 25 MiB at
#: 4 MiB; zstd's default, 8 MiB jobs at level 3, ~50 MiB): see :func:`zstd_job`.
ZSTD_JOB_MIN = 512 << 10
ZSTD_JOB_MAX = 4 << 20
ZSTD_RSS_PER_JOB_BYTE = 7
ZSTD_BASE_BYTES = 2 << 20
#: RSS of the other compressors as bigshuf runs them, measured compressing 96 MiB of base64 text:
#: ISA-L's two threads with 1 MiB blocks 11.5 MiB, bz2 level 9 6.6 MiB (xz: XZ_ENCODER_BYTES).
GZIP_BYTES = 12 << 20
BZ2_BYTES = 7 << 20
#: ISA-L gzip level for .gz outputs (0-3; 2 is its default, about zlib's level 6 in size), and
#: its compressing threads (any number gives the same bytes).
GZIP_LEVEL = 2
GZIP_THREADS = 2


def compression_of(path: str) -> Optional[str]:
    """The compression suffix of ``path`` ('.gz', ...) or None."""
    lower = str(path).lower()
    for suffix in CODECS:
        if lower.endswith(suffix):
            return suffix
    return None


def check_codecs(paths: Iterable[object]) -> None:
    """Raise :class:`UsageError` (exit 2) if a codec that ``paths`` (inputs or outputs, by
    extension) need cannot be loaded. Call before any work."""
    import importlib

    for path in paths:
        if not isinstance(path, str):
            continue
        suffix = compression_of(path)
        if suffix is None:
            continue
        module, what = CODECS[suffix].module, CODECS[suffix].needs
        try:
            importlib.import_module(module)
        except ImportError:
            raise UsageError(f"{path}: {suffix} files need {what} (pip install '{what}')") \
                from None


# -- decoder memory: an xz dictionary or a zstd window is held whole while decoding -----------

#: Decoder memory within the interpreter's slack whatever --memory: xz's default -6 (8 MiB
#: dictionary) and zstd up to level 19 (8 MiB window) decode at any --memory, as before.
DECODER_SLACK = 16 << 20
#: What a decoder holds besides its window (buffers, probability tables), rounded up.
DECODER_OVERHEAD = 1 << 20
#: The decoders' limit for the current run (None: none, as for verify): see decoders_within.
_DECODER_LIMIT: list = [None]


def decoder_limit(memory: int) -> int:
    """The most decoder memory a run at ``memory`` allows: half of it, or DECODER_SLACK."""
    return max(memory // 2, DECODER_SLACK)


def decoder_window(path: str) -> Optional[int]:
    """The dictionary (.xz) or window (.zst) size the first stream of a regular file declares
    in its header, or None (another codec, not a regular file, or no header to read)."""
    suffix = compression_of(path)
    if suffix is None or CODECS[suffix].window is None:
        return None
    try:
        if not os.path.isfile(path):
            return None  # a FIFO or a device: read once, so not peeked at (the limit still holds)
        with open(path, "rb") as f:
            head = f.read(64)
    except OSError:
        return None  # the reader reports it its usual way
    return CODECS[suffix].window(head)  # type: ignore[misc]


def _xz_dictionary(head: bytes) -> Optional[int]:
    """LZMA2's dictionary size from an xz stream's first block header."""
    if len(head) < 13 or not head.startswith(b"\xfd7zXZ\x00"):
        return None
    i = 14  # the stream header (12 bytes), the block header's size byte and its flags
    flags = head[13]
    for present in (flags & 0x40, flags & 0x80):  # compressed / uncompressed size varints
        while present and i < len(head) and head[i] & 0x80:
            i += 1
        i += 1 if present else 0
    for _ in range((flags & 3) + 1):
        if i + 2 >= len(head):
            return None
        fid, nprops = head[i], head[i + 1]
        if fid == 0x21 and nprops == 1:  # LZMA2
            bits = head[i + 2] & 0x3F
            return 0xFFFFFFFF if bits >= 40 else (2 | (bits & 1)) << (bits // 2 + 11)
        i += 2 + nprops
    return None


def _zstd_window(head: bytes) -> Optional[int]:
    try:
        import zstandard

        return int(zstandard.get_frame_parameters(head).window_size) or None
    except Exception:  # not a frame header zstandard can read: the reader says so
        return None


def check_decoders(paths: Iterable[object], memory: int) -> int:
    """Before any work: the decoder memory the inputs need (the largest, since one input is
    decoded at a time), to be set aside from what the run keeps in RAM; an input whose window
    cannot fit is refused (exit 2) rather than breaking the memory bound."""
    need = 0
    for path in paths:
        if not isinstance(path, (str, os.PathLike)):
            continue
        window = decoder_window(os.fspath(path))
        if window is None:
            continue
        if window + DECODER_OVERHEAD > decoder_limit(memory):
            raise UsageError(
                f"{os.fspath(path)}: decompressing it takes a {window / (1 << 20):,.0f} MiB window "
                f"(xz -9, zstd --long), more than --memory {memory:,} bytes allows for it "
                f"(half of it): use --memory {2 * (window + DECODER_OVERHEAD) >> 20}M or more")
        need = max(need, window + DECODER_OVERHEAD)
    return need


@contextlib.contextmanager
def decoders_within(limit: Optional[int]) -> Iterator[None]:
    """Decoders opened in the block refuse streams that need more memory than ``limit``
    (a later stream of a file, or a FIFO, that :func:`check_decoders` could not see)."""
    old = _DECODER_LIMIT[0]
    _DECODER_LIMIT[0] = limit
    try:
        yield
    finally:
        _DECODER_LIMIT[0] = old


def _too_big(name: str, limit: int) -> InputError:
    return InputError(f"decompressing needs more than {limit:,} bytes of memory (its dictionary "
                      "or window), more than --memory allows for it: raise --memory", name)


def open_decompressed(raw: BinaryIO, suffix: str, name: str) -> BinaryIO:
    """A binary stream of the decompressed bytes of ``raw`` (strict, see the module doc), read
    ahead by a background thread."""
    check_codecs([name if compression_of(name) == suffix else "x" + suffix])
    reader = _ZstdReader(raw, name) if CODECS[suffix].decompressor is None \
        else _StrictReader(raw, suffix, name)
    return _Prefetcher(reader, name)  # type: ignore[return-value]


def _decompressor(suffix: str, limit: Optional[int] = None):
    """A fresh one-stream decompressor with the bz2/lzma interface: ``decompress(data,
    max_length)``, ``needs_input``, ``eof``, ``unused_data``."""
    return CODECS[suffix].decompressor(limit)  # type: ignore[misc]


def _gzip_decompressor(limit: Optional[int]):
    from isal import isal_zlib
    return _ZlibLike(isal_zlib.decompressobj(wbits=31))


def _bz2_decompressor(limit: Optional[int]):
    import bz2
    return bz2.BZ2Decompressor()


def _lzma_decompressor(fmt: int):
    def make(limit: Optional[int]):
        import lzma
        return lzma.LZMADecompressor(format=fmt, memlimit=limit)
    return make


class _ZlibLike:
    """zlib's decompressobj behind the bz2/lzma interface (unconsumed input kept inside)."""

    def __init__(self, d):
        self.d = d
        self.tail = b""

    def decompress(self, data: bytes, max_length: int) -> bytes:
        out = self.d.decompress(self.tail + data if self.tail else data, max_length)
        self.tail = self.d.unconsumed_tail
        return out

    @property
    def needs_input(self) -> bool:
        return not self.tail

    @property
    def eof(self) -> bool:
        return self.d.eof

    @property
    def unused_data(self) -> bytes:
        return self.d.unused_data


class _StrictReader:
    """Concatenated gz, bz2 or xz streams; errors for truncation, corruption, trailing bytes."""

    def __init__(self, raw: BinaryIO, suffix: str, name: str):
        self.raw = raw
        self.suffix = suffix
        self.name = name
        self.limit = _DECODER_LIMIT[0]
        self.d = _decompressor(suffix, self.limit)
        self.fed = False   # the current decompressor got input (a stream has begun)
        self.streams = 0   # complete streams read so far
        self.done = False

    def _fail(self, why: str) -> InputError:
        return InputError(f"corrupt {self.suffix} data: {why}", self.name)

    def read_chunk(self, size: int) -> bytes:
        """Up to ``size`` decompressed bytes; b'' only at the end of the last stream."""
        while not self.done:
            data = b""
            if self.d.eof:
                data = self.d.unused_data
                self.streams += 1
                self.d = _decompressor(self.suffix, self.limit)  # next concatenated stream, if any
                self.fed = False
            if not data and self.d.needs_input:
                data = self.raw.read(READ_SIZE)
                if not data:
                    self.done = True
                    if self.fed and not self.d.eof:
                        raise self._fail("trailing bytes after the compressed data" if self.streams
                                         else "truncated (ended before the end-of-stream marker)")
                    return b""
            if not self.fed and CODECS[self.suffix].padding:
                data = data.lstrip(b"\0")  # stream padding (zero bytes) between or after streams
                if not data:
                    continue
            self.fed = True
            try:
                out = self.d.decompress(data, size)
            except Exception as exc:  # zlib.error, OSError (bz2), LZMAError
                if self.limit is not None and "emory usage limit" in str(exc):
                    raise _too_big(self.name, self.limit) from None
                raise self._fail(f"{exc} (or trailing garbage after the last stream)") from None
            if out:
                return out
        return b""

    def close(self) -> None:
        self.raw.close()


class _ZstdFrames:
    """Follows zstd frame and block headers through the compressed bytes (a few bytes of
    parsing per 128 KiB block), to know at the end of input whether the last frame was
    complete: zstandard's stream reader just stops inside a truncated frame."""

    def __init__(self, name: str):
        self.name = name
        self.hdr = bytearray()
        self.skip = 0
        self.state = "frame"
        self.checksum = False

    def complete(self) -> bool:
        return self.state == "frame" and not self.hdr and not self.skip

    def feed(self, data: bytes) -> None:
        view, i, n = memoryview(data), 0, len(data)
        while i < n:
            if self.skip:
                k = min(self.skip, n - i)
                self.skip -= k
                i += k
                continue
            need = self._need()
            k = min(need - len(self.hdr), n - i)
            self.hdr += view[i:i + k]
            i += k
            if len(self.hdr) == need and need == self._need():
                self._advance()

    def _need(self) -> int:
        h = self.hdr
        if self.state == "block":
            return 3
        if len(h) < 4:
            return 4
        magic = int.from_bytes(h[:4], "little")
        if magic & 0xFFFFFFF0 == 0x184D2A50:  # skippable frame: magic, 4-byte size, payload
            return 8
        if magic != 0xFD2FB528:
            raise InputError("corrupt .zst data: not a zstd frame (trailing garbage?)",
                             self.name)
        if len(h) < 5:
            return 5
        fhd = h[4]
        single = (fhd >> 5) & 1
        fcs = (1 if single else 0, 2, 4, 8)[fhd >> 6]
        return 5 + (0 if single else 1) + (0, 1, 2, 4)[fhd & 3] + fcs

    def _advance(self) -> None:
        h, self.hdr = bytes(self.hdr), bytearray()
        if self.state == "block":
            bh = int.from_bytes(h, "little")
            kind = (bh >> 1) & 3
            if kind == 3:
                raise InputError("corrupt .zst data: reserved block type", self.name)
            self.skip = 1 if kind == 1 else bh >> 3
            if bh & 1:  # last block of the frame, then its checksum if any
                self.skip += 4 * self.checksum
                self.state = "frame"
        elif len(h) == 8 and int.from_bytes(h[:4], "little") & 0xFFFFFFF0 == 0x184D2A50:
            self.skip = int.from_bytes(h[4:], "little")
        else:
            self.checksum = bool((h[4] >> 2) & 1)
            self.state = "block"


class _ZstdReader:
    """All frames of a .zst input through zstandard's stream reader (bounded output per read,
    unlike its decompressobj), with :class:`_ZstdFrames` watching the bytes it consumes."""

    def __init__(self, raw: BinaryIO, name: str):
        import zstandard

        self.raw = raw
        self.name = name
        self.frames = _ZstdFrames(name)
        self.limit = _DECODER_LIMIT[0]
        dctx = zstandard.ZstdDecompressor(max_window_size=self.limit or 0)
        self.reader = dctx.stream_reader(
            self, read_size=READ_SIZE, read_across_frames=True)  # type: ignore[arg-type]

    def read(self, size: int = -1) -> bytes:
        """The compressed bytes, for zstandard (which calls this)."""
        data = self.raw.read(size)
        self.frames.feed(data)
        return data

    def read_chunk(self, size: int) -> bytes:
        try:
            out = self.reader.read(size)
        except InputError:
            raise
        except Exception as exc:  # zstandard.ZstdError
            if "too much memory" in str(exc):
                if self.limit is not None:
                    raise _too_big(self.name, self.limit) from None
                raise InputError("its window is larger than zstd decodes by default (128 MiB, "
                                 "from zstd --long=28 up): not read", self.name) from None
            raise InputError(f"corrupt .zst data: {exc}", self.name) from None
        if not out and not self.frames.complete():
            raise InputError("corrupt .zst data: truncated (ended inside a frame)", self.name)
        return out

    def close(self) -> None:
        self.raw.close()


class _Prefetcher(io.RawIOBase):
    """Runs a reader's ``read_chunk`` in a background thread, ``PREFETCH`` chunks ahead, and
    passes its errors on to the consumer."""

    def __init__(self, reader: "_StrictReader | _ZstdReader", name: str):
        self.reader = reader
        self.name = name
        self.q: "queue.Queue[object]" = queue.Queue(PREFETCH)
        self.stop = threading.Event()
        self.buf = memoryview(b"")
        self.eof = False
        self.thread = threading.Thread(target=self._run, name="bigshuf-decompress", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        item: object
        while not self.stop.is_set():
            try:
                item = self.reader.read_chunk(READ_SIZE)
            except BaseException as exc:  # handed to the reading thread
                item = exc
            while not self.stop.is_set():
                try:
                    self.q.put(item, timeout=0.1)
                    break
                except queue.Full:
                    continue
            if not isinstance(item, bytes) or not item:
                return

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        while not self.buf and not self.eof:
            try:
                item = self.q.get(timeout=0.2)
            except queue.Empty:
                continue
            if isinstance(item, BaseException):
                self.eof = True
                raise item
            assert isinstance(item, bytes)
            if not item:
                self.eof = True
            self.buf = memoryview(item)
        n = min(len(b), len(self.buf))
        b[:n] = self.buf[:n]
        self.buf = self.buf[n:]
        return n

    def close(self) -> None:
        if not self.closed:
            self.stop.set()
            # A thread blocked reading a pipe that nobody writes to must not hang the cleanup
            # (a signal's): it is a daemon, and closing the input under it is left to the exit.
            self.thread.join(timeout=1.0)
            if not self.thread.is_alive():
                self.reader.close()
        super().close()


class _Rechunked:
    """Feeds a compressor pieces of exactly ``CHUNK`` bytes (the last one shorter), so the
    compressed bytes depend only on the data, not on how callers cut their writes: ISA-L's
    output does depend on it (the cluster engine writes in other pieces than the local one);
    and what a compressor returns at once stays about a piece."""

    CHUNK = 1 << 20

    def __init__(self, inner):
        self.inner = inner
        self.pending = bytearray()

    def write(self, data) -> int:
        view = memoryview(data).cast("B")
        total = len(view)
        if self.pending:
            k = min(self.CHUNK - len(self.pending), len(view))
            self.pending += view[:k]
            view = view[k:]
            if len(self.pending) < self.CHUNK:
                return total
            self.inner.write(self.pending)
            self.pending = bytearray()
        while len(view) >= self.CHUNK:
            self.inner.write(view[:self.CHUNK])
            view = view[self.CHUNK:]
        self.pending += view
        return total

    def flush(self) -> None:
        """Nothing: a compressor flush would add a sync point, changing the bytes."""

    def close(self) -> None:
        if self.pending:
            self.inner.write(self.pending)
            self.pending = bytearray()
        self.inner.close()


#: Encoder memory of xz presets 0-6 (liblzma's figures): the preset is the largest whose
#: encoder fits a sixteenth of --memory (like one block), so a .xz output stays in the budget.
XZ_ENCODER_BYTES = (3 << 20, 9 << 20, 17 << 20, 32 << 20, 48 << 20, 94 << 20, 94 << 20)


def xz_preset(memory: Optional[int]) -> int:
    """The xz preset for a memory budget (6, xz's default, without one)."""
    if memory is None:
        return 6
    room = max(memory // 16, XZ_ENCODER_BYTES[0])
    return max(p for p, need in enumerate(XZ_ENCODER_BYTES) if need <= room)


def zstd_job(memory: Optional[int]) -> int:
    """The zstd job size for a memory budget: the largest power of two whose buffers fit a
    sixteenth of it (like one block, and like the xz encoder), within zstd's minimum and
    ZSTD_JOB_MAX. It changes the compressed bytes, so it depends on --memory only, as the
    shuffle itself does."""
    job = ZSTD_JOB_MIN
    room = (memory or 0) // 16
    while job < ZSTD_JOB_MAX and _zstd_bytes(2 * job) <= room:
        job *= 2
    return job


def _zstd_bytes(job: int) -> int:
    """zstd's RSS with jobs of this size, rounded up: measured 4-5 MiB at 512 KiB, 13-14 at
    2 MiB, 22-25 at 4 MiB (two corpora); this gives 5.5, 16 and 30."""
    return ZSTD_RSS_PER_JOB_BYTE * job + ZSTD_BASE_BYTES


def compressor_bytes(path: object, memory: Optional[int]) -> int:
    """Bytes the compressor of an output named ``path`` holds at this budget (0: not
    compressed). The run sets them aside from what it keeps in RAM (shuffler/run.py): one
    compressor at a time, whatever the shards or splits."""
    if not isinstance(path, (str, os.PathLike)):
        return 0
    suffix = compression_of(os.fspath(path))
    return 0 if suffix is None else CODECS[suffix].encoder_bytes(memory)


def _outlive_the_opening_thread(writer: object) -> None:
    """ISA-L's threaded writer stops its threads when the thread that opened it ends. A shard
    is opened by whichever gather worker reaches it and closed later, possibly after that
    worker is gone: the flush then waited forever. Tie the threads to the main thread."""
    inner = getattr(writer, "raw", writer)
    if hasattr(inner, "_calling_thread"):
        inner._calling_thread = threading.main_thread()


def compressor_for(path: str, raw, memory: Optional[int] = None) -> Optional[BinaryIO]:
    """A compressing writer over ``raw`` chosen by the extension of ``path``, or None.
    ``memory`` (the run's budget) bounds the encoder's memory where the codec has a choice (xz).

    Deterministic: fixed levels, no timestamps or names in headers, and zstd's multi-threaded
    format (the same bytes for any number of zstd threads), so the same records always
    compress to the same bytes (the cluster engine relies on it)."""
    suffix = compression_of(path)
    if suffix is None:
        return None
    check_codecs([path])
    return _Rechunked(CODECS[suffix].writer(raw, memory))  # type: ignore[return-value]


def _gzip_writer(raw, memory: Optional[int]):
    from isal import igzip_threaded
    # Blocks of CHUNK bytes compressed by GZIP_THREADS threads, each with the previous block's
    # last 32 KiB as dictionary: the bytes depend on the block size, not on the thread count.
    writer = igzip_threaded.open(
        raw, "wb", compresslevel=GZIP_LEVEL, threads=GZIP_THREADS, block_size=_Rechunked.CHUNK)
    _outlive_the_opening_thread(writer)
    return writer


def _bz2_writer(raw, memory: Optional[int]):
    import bz2
    return bz2.BZ2File(raw, "wb", compresslevel=9)


def _lzma_writer(fmt: int):
    def make(raw, memory: Optional[int]):
        import lzma
        return lzma.LZMAFile(raw, "wb", format=fmt, preset=xz_preset(memory))
    return make


def _zstd_writer(raw, memory: Optional[int]):
    import zstandard
    params = zstandard.ZstdCompressionParameters.from_level(
        ZSTD_LEVEL, threads=ZSTD_THREADS, job_size=zstd_job(memory))
    return zstandard.ZstdCompressor(compression_params=params).stream_writer(raw, closefd=False)


#: lzma's FORMAT_XZ and FORMAT_ALONE (lzma is imported only when used: a Python may lack it).
_FORMAT_XZ, _FORMAT_ALONE = 1, 2


def _lzma_alone_dictionary(head: bytes) -> Optional[int]:
    """The dictionary size an .lzma ("LZMA alone") header declares (bytes 1-4)."""
    return int.from_bytes(head[1:5], "little") if len(head) >= 13 else None


@dataclass(frozen=True)
class Codec:
    """Everything bigshuf knows of one compression format: adding a format is one entry of
    :data:`CODECS` (and its functions above), nothing elsewhere. Every writer is fed in
    pieces (:class:`_Rechunked`): given a whole 64 MB unit, bz2 and xz returned its compressed
    bytes as one object, as big as the unit for data that does not compress."""

    module: str                                    # imported to check it is there
    needs: str                                     # what to install when it is not
    decompressor: Optional[Callable[[Optional[int]], Any]]  # one stream; None: its own reader
    writer: Callable[[Any, Optional[int]], Any]    # (raw, --memory) -> a deterministic writer
    encoder_bytes: Callable[[Optional[int]], int]  # what the writer holds at this --memory
    window: Optional[Callable[[bytes], Optional[int]]] = None  # decoder memory, from the header
    padding: bool = False                          # zero bytes may pad between streams (.xz)


#: The formats, by extension (inputs and outputs alike).
CODECS: Dict[str, Codec] = {
    ".gz": Codec("isal.igzip", "isal", _gzip_decompressor, _gzip_writer, lambda m: GZIP_BYTES),
    ".bz2": Codec("bz2", "a Python built with bz2", _bz2_decompressor, _bz2_writer,
                  lambda m: BZ2_BYTES),
    ".xz": Codec("lzma", "a Python built with lzma", _lzma_decompressor(_FORMAT_XZ), _lzma_writer(_FORMAT_XZ),
                 lambda m: XZ_ENCODER_BYTES[xz_preset(m)], _xz_dictionary, padding=True),
    ".lzma": Codec("lzma", "a Python built with lzma", _lzma_decompressor(_FORMAT_ALONE),
                   _lzma_writer(_FORMAT_ALONE),
                   lambda m: XZ_ENCODER_BYTES[xz_preset(m)], _lzma_alone_dictionary),
    ".zst": Codec("zstandard", "zstandard", None, _zstd_writer,
                  lambda m: _zstd_bytes(zstd_job(m)), _zstd_window),
}
#: Extensions handled transparently, for inputs and outputs.
COMPRESSION_SUFFIXES = tuple(CODECS)


__all__ = ["COMPRESSION_SUFFIXES", "compression_of", "check_codecs", "open_decompressed",
           "compressor_for"]
