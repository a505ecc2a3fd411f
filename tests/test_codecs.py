"""Compressed inputs are read strictly (truncation, corruption, trailing bytes are input errors),
outputs are deterministic, and a missing codec is reported before any work."""
from __future__ import annotations

import bz2
import gzip
import io
import lzma
import sys

import pytest
import zstandard
from helpers import invoke, lines_of

import bigshuf
from bigshuf.common import codecs
from bigshuf.common.codecs import _ZstdFrames, check_codecs, compressor_for
from bigshuf.common.errors import InputError, UsageError
from bigshuf.shuffler.records import RecordReader, read_all_lines

SEQ = b"".join(b"%d\n" % i for i in range(1, 300_001))  # `seq 300000`: blocks of 1 MB at 16M
SMALL = b"".join(b"line %d\n" % i for i in range(5000))

COMPRESS = {
    ".gz": lambda d: gzip.compress(d, mtime=0),
    ".bz2": lambda d: bz2.compress(d, 1),
    ".xz": lambda d: lzma.compress(d, preset=1),
    ".lzma": lambda d: lzma.compress(d, format=lzma.FORMAT_ALONE, preset=1),
    ".zst": lambda d: zstandard.ZstdCompressor(level=3, write_checksum=True).compress(d),
}
SUFFIXES = pytest.mark.parametrize("suffix", list(COMPRESS))


def _write(tmp_path, name: str, data: bytes) -> str:
    path = tmp_path / name
    path.write_bytes(data)
    return str(path)


def _shuffle_error(path: str) -> InputError:
    with pytest.raises(InputError) as info:
        bigshuf.shuffle([path], io.BytesIO(), memory="16M", seed=1)
    assert info.value.path == path
    return info.value


@SUFFIXES
def test_whole_and_concatenated_streams(tmp_path, suffix):
    one = COMPRESS[suffix](SMALL)
    path = _write(tmp_path, "in.txt" + suffix, one + one)
    assert sorted(read_all_lines(path)) == sorted(SMALL.splitlines(keepends=True) * 2)


@SUFFIXES
def test_empty_file_holds_no_records(tmp_path, suffix):
    assert read_all_lines(_write(tmp_path, "e.txt" + suffix, b"")) == []


@SUFFIXES
def test_truncation_is_an_input_error(tmp_path, suffix):
    data = COMPRESS[suffix](SEQ)
    for cut in (len(data) // 2, len(data) - 1, 3):
        path = _write(tmp_path, f"t{cut}.txt{suffix}", data[:cut])
        assert "truncated" in str(_shuffle_error(path)) or suffix == ".zst" and cut == 3


@SUFFIXES
def test_corruption_is_an_input_error(tmp_path, suffix):
    data = bytearray(COMPRESS[suffix](SEQ))
    middle = len(data) // 2
    data[middle:middle + 64] = bytes(64)
    _shuffle_error(_write(tmp_path, "c.txt" + suffix, bytes(data)))


@SUFFIXES
@pytest.mark.parametrize("tail", [b"garbage\n", b"\0" * 16, b"x" * 5000])
def test_trailing_bytes_are_an_input_error(tmp_path, suffix, tail):
    path = _write(tmp_path, "g.txt" + suffix, COMPRESS[suffix](SMALL) + tail)
    if suffix == ".xz" and not tail.strip(b"\0"):  # zero bytes: .xz's own stream padding
        assert len(read_all_lines(path)) == 5000
        return
    _shuffle_error(path)


def test_truncated_zst_cli_exit_2_and_verify(tmp_path):
    """Issue 8: `seq 1000000 | zstd` cut at 150000 bytes used to give 352 915 lines, exit 0."""
    data = zstandard.ZstdCompressor(level=3).compress(SEQ)
    path = _write(tmp_path, "t.zst", data[:len(data) // 2])
    full = _write(tmp_path, "s.txt", SEQ)
    for args in (["shuffle", path, "-o", str(tmp_path / "o")], ["verify", full, path]):
        r = invoke(args)
        assert r.returncode == 2, r.stderr
        assert path.encode() in r.stderr and b"truncated" in r.stderr
    assert not (tmp_path / "o").exists()


def test_zstd_frame_walker_byte_by_byte():
    skippable = (0x184D2A53).to_bytes(4, "little") + (3).to_bytes(4, "little") + b"abc"
    frame = zstandard.ZstdCompressor(write_checksum=True, write_content_size=False).compress(SMALL)
    data = skippable + frame + frame
    walker = _ZstdFrames("x")
    for i in range(len(data)):
        walker.feed(data[i:i + 1])
        assert walker.complete() == (i + 1 in (len(skippable), len(skippable) + len(frame),
                                               len(data)))


def test_missing_codec_is_a_usage_error_before_any_work(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "zstandard", None)  # import fails
    src = _write(tmp_path, "in.txt", SMALL)
    with pytest.raises(UsageError, match="zstandard"):
        check_codecs([src, str(tmp_path / "out.zst")])
    check_codecs([src, "out.gz", "out.bz2", "out.xz"])  # the others load
    zst = _write(tmp_path, "in.txt.zst", b"")
    with pytest.raises(UsageError, match="zstandard"):  # inputs: when the reader is made
        RecordReader([src, zst])


@pytest.mark.parametrize("memory", [None, 1 << 30])  # zstd jobs of 512 KiB and of 4 MiB
@pytest.mark.parametrize("suffix", [".gz", ".zst"])
def test_compressed_output_is_deterministic(tmp_path, suffix, monkeypatch, memory):
    """The same bytes for any number of codec threads (>= 1) and however the writes are cut."""
    outs = set()
    for threads, step in ((1, 1 << 20), (2, 77_777), (4, 3 << 20)):  # and any write sizes
        monkeypatch.setattr(codecs, "ZSTD_THREADS", threads)
        monkeypatch.setattr(codecs, "GZIP_THREADS", threads)
        raw = io.BytesIO()
        w = compressor_for("x.txt" + suffix, raw, memory)
        for i in range(0, len(SEQ), step):
            w.write(SEQ[i:i + step])
        w.close()
        outs.add(raw.getvalue())
    assert len(outs) == 1
    data = outs.pop()
    plain = gzip.decompress(data) if suffix == ".gz" else \
        zstandard.ZstdDecompressor().stream_reader(io.BytesIO(data), read_across_frames=True).read()
    assert plain == SEQ


def test_xz_stream_padding_is_valid(tmp_path):
    """Review break: zero bytes padding .xz streams (valid: `xz -t` accepts them) were called
    corrupt. Padding between and after streams is skipped; other trailing bytes still fail."""
    one = lzma.compress(SMALL, preset=1)
    path = _write(tmp_path, "p.txt.xz", one + bytes(4) + one + bytes(8))
    assert sorted(read_all_lines(path)) == sorted(SMALL.splitlines(keepends=True) * 2)
    assert "trailing" in str(_shuffle_error(_write(tmp_path, "g.txt.xz", one + b"garbage")))


def test_a_zstd_window_beyond_the_default_is_named_not_corrupt(tmp_path):
    """Review break: verify of a `zstd --long=30` file said 'corrupt .zst data'."""
    params = zstandard.ZstdCompressionParameters.from_level(3, window_log=30, write_content_size=False)
    writer = zstandard.ZstdCompressor(compression_params=params).compressobj()
    data = writer.compress(SMALL) + writer.flush()  # streamed: the frame declares the window
    res = invoke(["verify", _write(tmp_path, "s.txt", SMALL), _write(tmp_path, "l.zst", data)])
    assert res.returncode == 2 and b"window" in res.stderr and b"corrupt" not in res.stderr, res.stderr


def _xz_declaring(data: bytes, dict_bits: int) -> bytes:
    """An .xz stream of ``data`` whose block header declares a 2**(dict_bits//2 + 12)-byte
    dictionary (xz -9: 64 MiB) without the encoder ever allocating one."""
    import lzma
    import zlib

    xz = bytearray(lzma.compress(data, format=lzma.FORMAT_XZ,
                                 filters=[{"id": lzma.FILTER_LZMA2, "dict_size": 1 << 16}]))
    size = (xz[12] + 1) * 4
    assert xz[13] == 0 and xz[14:16] == b"\x21\x01"
    xz[16] = dict_bits
    xz[12 + size - 4:12 + size] = zlib.crc32(bytes(xz[12:12 + size - 4])).to_bytes(4, "little")
    return bytes(xz)


def _zst_declaring(data: bytes, window_log: int) -> bytes:
    """One zstd frame of raw blocks whose header declares a 2**window_log window (--long=27)."""
    blocks = [data[i:i + (1 << 16)] for i in range(0, len(data), 1 << 16)] or [b""]
    out = bytearray(b"\x28\xb5\x2f\xfd\x00" + bytes([(window_log - 10) << 3]))
    for i, b in enumerate(blocks):
        out += ((len(b) << 3) | (i == len(blocks) - 1)).to_bytes(3, "little") + b
    return bytes(out)


@pytest.mark.parametrize("kind", ["xz", "zst"])
def test_a_large_decoder_window_is_refused_when_it_cannot_fit(tmp_path, kind):
    data = b"".join(b"%d\n" % i for i in range(1000))
    big = tmp_path / f"in.{kind}"
    big.write_bytes(_xz_declaring(data, 28) if kind == "xz" else _zst_declaring(data, 27))
    r = invoke(["shuffle", big, "-S", "16M", "-o", tmp_path / "out.txt"])
    assert r.returncode == 2 and b"window" in r.stderr and b"--memory" in r.stderr, r.stderr
    assert r.stderr.count(b"\n") == 1 and not (tmp_path / "out.txt").exists()
    ok = invoke(["shuffle", big, "-S", "300M", "-o", tmp_path / "out.txt"])
    assert ok.returncode == 0 and lines_of((tmp_path / "out.txt").read_bytes()) == lines_of(data)


def test_a_window_that_fits_is_set_aside_from_the_budget(tmp_path):
    from bigshuf.shuffler.options import ShuffleOptions
    from bigshuf.shuffler.run import plan_run

    big = tmp_path / "in.xz"
    big.write_bytes(_xz_declaring(b"a\nb\n", 28))  # 64 MiB
    assert plan_run(ShuffleOptions(inputs=[str(big)], memory="256M")).reserved >= 64 << 20


def test_a_later_stream_beyond_the_limit_is_a_clean_input_error(tmp_path):
    import lzma

    data = b"".join(b"%d\n" % i for i in range(1000))
    src = tmp_path / "in.xz"  # the first stream is small; the second declares 64 MiB
    src.write_bytes(lzma.compress(data, format=lzma.FORMAT_XZ) + _xz_declaring(data, 28))
    r = invoke(["shuffle", src, "-S", "16M", "-o", tmp_path / "out.txt"])
    assert r.returncode == 2 and r.stderr.startswith(f"bigshuf: error: {src}: decompressing needs".encode())
    assert r.stderr.count(b"\n") == 1 and not (tmp_path / "out.txt").exists()
