"""The compiled bitshuffle-LZ4 decoder (stem4d_dask.kernels.bslz4): bit-exact against the
bitshuffle package and h5py + hdf5plugin, corrupt chunks raise (never read or write out of
bounds), and the decode runs without the GIL."""

import struct
import threading
import zlib

import bitshuffle
import h5py
import hdf5plugin
import numpy as np
import pytest

from stem4d_dask.kernels import bslz4
from stem4d_dask.kernels.bslz4 import Bslz4Error, decode_run
from stem4d_dask.kernels.lz4 import lz4_block

DTYPES = ["u1", "u2", "u4", "f4", "u8"]


def chunk(frame, block=0):
    """``frame`` as bitshuffle's HDF5 filter stores it: 12-byte header, then the blocks."""
    frame = np.ascontiguousarray(frame)
    block = block or max(128, 8192 // frame.itemsize // 8 * 8)  # the filter's default
    body = bitshuffle.compress_lz4(frame, block).tobytes()
    return struct.pack(">QI", frame.nbytes, block * frame.itemsize) + body


def frames_of(kind, dtype, shape, count, rng):
    dtype = np.dtype(dtype)
    if kind == "zeros":
        return np.zeros((count, *shape), dtype)
    if kind == "noise":  # incompressible: random bytes (NaNs and all for floats)
        raw = rng.bytes(count * int(np.prod(shape)) * dtype.itemsize)
        return np.frombuffer(raw, dtype).reshape(count, *shape).copy()
    values = rng.poisson(3.0, (count, *shape))  # counts: mostly-zero high bit planes
    values[:, 0, 0] = 200
    return values.astype(dtype)


def decode(chunks, like, raw=None):
    out = np.empty((len(chunks), *like.shape[1:]), like.dtype)
    decode_run(b"".join(chunks), [len(c) for c in chunks], out, raw)
    return out


def same_bytes(a, b):
    return (
        a.shape == b.shape
        and a.dtype == b.dtype
        and np.array_equal(a.view(np.uint8), b.view(np.uint8))
    )


# --- bit-exact ------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(127, 129), (64, 48), (1, 3), (8, 8), (3, 1000)])
@pytest.mark.parametrize("kind", ["counts", "noise", "zeros"])
def test_matches_bitshuffle(dtype, shape, kind):
    rng = np.random.default_rng(zlib.crc32(repr((dtype, shape, kind)).encode()))
    frames = frames_of(kind, dtype, shape, 3, rng)
    chunks = [chunk(f) for f in frames]
    out = decode(chunks, frames)
    assert same_bytes(out, frames)
    itemsize = frames.dtype.itemsize
    for c, f in zip(chunks, out, strict=True):
        ref = bitshuffle.decompress_lz4(
            np.frombuffer(c, np.uint8, offset=12),
            shape,
            frames.dtype,
            struct.unpack_from(">I", c, 8)[0] // itemsize,
        )
        assert same_bytes(f, ref)


@pytest.mark.parametrize("dtype", ["u1", "u2", "u4", "u8"])
@pytest.mark.parametrize("block", [8, 16, 120, 128, 136, 1000])
def test_block_sizes(dtype, block):
    """Several full blocks, a last partial block (n % block, rounded down to 8) and the raw
    n % 8 tail, with block sizes the HDF5 filter would not pick."""
    rng = np.random.default_rng(block)
    frames = frames_of("counts", dtype, (37, 29), 2, rng)  # 1073 values: 1073 % 8 = 1
    assert same_bytes(decode([chunk(f, block) for f in frames], frames), frames)


@pytest.mark.parametrize("dtype", DTYPES)
def test_matches_hdf5plugin(tmp_path, dtype):
    """Chunks written by HDF5's bitshuffle filter (hdf5plugin), read back raw with
    read_direct_chunk and decoded: the values h5py + hdf5plugin decode."""
    rng = np.random.default_rng(5)
    frames = np.concatenate(
        [
            frames_of("counts", dtype, (127, 129), 3, rng),
            frames_of("noise", dtype, (127, 129), 2, rng),
            frames_of("zeros", dtype, (127, 129), 1, rng),
        ]
    )
    path = tmp_path / "bslz4.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset(
            "d", data=frames, chunks=(1, 127, 129), **hdf5plugin.Bitshuffle(cname="lz4")
        )
    with h5py.File(path, "r") as f:
        dset = f["d"]
        chunks = [dset.id.read_direct_chunk((i, 0, 0))[1] for i in range(len(frames))]
        stored = dset[()]
    assert same_bytes(stored, frames)
    assert same_bytes(decode(chunks, frames), stored)


def test_run_with_raw_frames_and_offset():
    rng = np.random.default_rng(1)
    frames = frames_of("counts", "u2", (31, 33), 5, rng)
    chunks = [chunk(f) for f in frames]
    chunks[1] = frames[1].tobytes()  # stored unfiltered (HDF5's skipped filter)
    chunks[4] = frames[4].tobytes()
    raw = [False, True, False, False, True]
    pad = b"\x55" * 13  # the run starts 13 bytes into the buffer
    out = np.empty_like(frames)
    decode_run(
        np.frombuffer(pad + b"".join(chunks), np.uint8),
        np.array([len(c) for c in chunks], np.uint32),
        out,
        raw,
        start=len(pad),
    )
    assert same_bytes(out, frames)


def test_empty_run_and_bad_outputs():
    out = np.empty((0, 4, 4), np.uint16)
    assert decode_run(b"", [], out) is out
    frame = np.arange(16, dtype=np.uint16).reshape(4, 4)
    with pytest.raises(ValueError, match="out holds 2 frames, there are 1 chunks"):
        decode_run(chunk(frame), [len(chunk(frame))], np.empty((2, 4, 4), np.uint16))
    with pytest.raises(ValueError, match="little-endian"):
        decode_run(chunk(frame), [len(chunk(frame))], np.empty((1, 4, 4), ">u2"))
    with pytest.raises(ValueError, match="C-contiguous"):
        decode_run(chunk(frame), [len(chunk(frame))], np.empty((1, 4, 8), np.uint16)[..., ::2])


# --- corrupt chunks -------------------------------------------------------------------------


def lz4_chunk(lz4, n=8):
    """A u1 chunk of ``n`` values (one block of ``n``) whose LZ4 block is ``lz4``."""
    return struct.pack(">QI", n, n) + struct.pack(">I", len(lz4)) + lz4


def decode_u1(c, n=8):
    out = np.empty((1, n), np.uint8)
    decode_run(c, [len(c)], out)
    return out[0]


def last(k):
    """A last sequence of ``k`` (12 to 269) literals: LZ4's reference decoder wants the last 5
    bytes literal and the last match to start 12 bytes before the end."""
    token = bytes([k << 4]) if k < 15 else b"\xf0" + bytes([k - 15])
    return token + bytes(range(100, 100 + k))


HANDMADE = [  # (LZ4 block, decoded length)
    (b"\x80" + bytes(range(8)), 8),  # literals only
    (b"\x13A\x01\x00" + last(16), 24),  # a match overlapping its own output: offset 1, a run
    (b"\x34ABC\x03\x00" + last(13), 24),  # offset 3: a repeating pattern
    (b"\x3fABC\x03\x00\x05" + last(13), 40),  # the same, longer (length extension)
    (b"\x1fQ\x01\x00\x02" + last(18), 40),  # a long run
    (b"\xf0\x01" + bytes(range(16)), 16),  # literal length extension
    (b"\xaa" + bytes(range(10)) + b"\x0a\x00" + last(16), 40),  # offset 10, overlapping
    (b"\xfc\x01" + bytes(range(16)) + b"\x10\x00" + last(16), 48),  # offset 16: no overlap
]


@pytest.mark.parametrize("lz4, n", HANDMADE)
def test_handmade_lz4_blocks(lz4, n):
    """Decoded and bit-unshuffled as bitshuffle's own decoder (LZ4_decompress_safe) does; the
    LZ4 step also straight into a buffer of exactly the block's size (no room past it for
    word copies: the byte-by-byte paths) and into a roomy one."""
    c = lz4_chunk(lz4, n)
    ref = bitshuffle.decompress_lz4(
        np.frombuffer(c, np.uint8, offset=12), (n,), np.dtype(np.uint8), n
    )
    assert np.array_equal(decode_u1(c, n), ref)
    src = np.frombuffer(lz4, np.uint8)
    plain = np.empty(n, np.uint8)
    assert lz4_block(src, 0, src.size, plain, n) == n
    roomy = np.empty(n + 64, np.uint8)
    assert lz4_block(src, 0, src.size, roomy, n) == n
    assert np.array_equal(plain, roomy[:n])


def test_lz4_streams_of_other_encoders():
    """LZ4 blocks from the lz4 package's fast, default and high-compression encoders (longer
    and farther matches than bitshuffle's): decoded exactly, with and without room past the
    output."""
    block = pytest.importorskip("lz4.block")
    rng = np.random.default_rng(9)
    for trial in range(300):
        n = int(rng.integers(1, 3000))
        data = [
            rng.integers(0, 3, n, dtype=np.uint8).tobytes(),
            rng.bytes(n),
            (rng.bytes(int(rng.integers(1, 40))) * n)[:n],
        ][trial % 3]
        mode = ["default", "fast", "high_compression"][trial % 3 if trial % 2 else 2]
        src = np.frombuffer(block.compress(data, mode=mode, store_size=False), np.uint8)
        for room in (0, 40):
            dst = np.empty(n + room, np.uint8)
            assert lz4_block(src, 0, src.size, dst, n) == n
            assert dst[:n].tobytes() == data


@pytest.mark.parametrize(
    "lz4, what",
    [
        (b"\x13A\x00\x00\x00", "offset 0"),
        (b"\x13A\x05\x00\x00", "offset before the start of the output"),
        (b"\x13A\x01", "offset cut off"),
        (b"\xf0\xff\xff", "literal length runs off the end"),
        (b"\x90" + bytes(9), "more literals than the block holds"),
        (b"\x50ABC", "literals run past the data"),
        (b"\x1fA\x01\x00\x10\x00", "match longer than the block"),
        (b"\x1fA\x01\x00", "match length cut off"),
        (b"\x13A\x01\x00", "ends after a match"),
        (b"", "empty block"),
    ],
)
def test_corrupt_lz4(lz4, what):
    with pytest.raises(Bslz4Error, match="LZ4 block is corrupt") as err:
        decode_u1(lz4_chunk(lz4))
    assert err.value.index == 0, what


def test_short_block_and_framing_errors():
    with pytest.raises(Bslz4Error, match="decompresses to the wrong size"):
        decode_u1(lz4_chunk(b"\x40ABCD"))
    frame = (np.arange(1001) % 7).astype(np.uint16)  # 7 blocks of 128, 104 values, 1 raw
    good = chunk(frame, 128)
    out = np.empty((1, 1001), np.uint16)

    def fails(c, match, size=None):
        with pytest.raises(Bslz4Error, match=match):
            decode_run(c, [len(c) if size is None else size], out)

    fails(good[:11], "shorter than its 12-byte header")
    fails(
        struct.pack(">Q", 2000) + good[8:],
        r"another uncompressed size .*2000 bytes, a "
        r"frame has 2002",
    )
    fails(b"\xff" * 8 + good[8:], "another uncompressed size")
    for block_bytes in (0, 3, 2 * 12, 2**32 - 2):  # not whole values, not 8k values
        fails(good[:8] + struct.pack(">I", block_bytes) + good[12:], "bad block size")
    fails(good[:-1], "do not add up")  # the raw tail is one byte short
    fails(good + b"\x00", "do not add up")
    fails(good[:12] + struct.pack(">I", 2**31) + good[16:], "runs past the end of the chunk")
    fails(good[:14], "ends inside a block's size field")
    fails(good, "beyond the end of the data read", size=len(good) + 1)
    with pytest.raises(ValueError, match="negative chunk size"):
        decode_run(good, [-1], out)
    raw_bad = np.zeros(2001, np.uint8).tobytes()
    with pytest.raises(Bslz4Error, match="do not add up"):
        decode_run(raw_bad, [len(raw_bad)], out, [True])


def test_error_names_the_chunk_and_keeps_the_others():
    frames = frames_of("counts", "u2", (16, 16), 4, np.random.default_rng(2))
    chunks = [chunk(f) for f in frames]
    chunks[2] = chunks[2][:20]
    out = np.zeros_like(frames)
    with pytest.raises(Bslz4Error) as err:
        decode_run(b"".join(chunks), [len(c) for c in chunks], out)
    assert err.value.index == 2
    assert same_bytes(out[:2], frames[:2]) and not out[3].any()


@pytest.mark.parametrize("dtype", ["u1", "u2", "u4", "u8"])
def test_fuzzed_chunks_never_escape(dtype):
    """Random damage (flipped, zeroed or random bytes, cuts, a wrong size) to valid chunks of
    small frames with several blocks: each decode either succeeds or raises Bslz4Error, and
    nothing is written outside the frames given (the frames either side stay as they were)."""
    rng = np.random.default_rng(7)
    frames = frames_of("counts", dtype, (11, 13), 2, rng)  # 143 values: 2 blocks + 1 + raw 7
    chunks = [bytearray(chunk(f, 64)) for f in frames]
    store = np.zeros((4, 11, 13 * frames.itemsize), np.uint8)  # frames 1, 2 between guards
    guard = np.full(store.shape, 0xA5, np.uint8)
    failures = 0
    for trial in range(1500):
        damaged = [bytearray(c) for c in chunks]
        c = damaged[trial % 2]
        how = trial % 5
        at = int(rng.integers(0, len(c)))
        if how == 0:
            c[at] ^= 1 << int(rng.integers(0, 8))
        elif how == 1:
            c[at : at + int(rng.integers(1, 8))] = rng.bytes(len(c[at : at + 7]))
        elif how == 2:
            del c[at:]
        elif how == 3:
            c[at] = 0xFF
        else:
            c[at : at + 2] = b"\x00\x00"
        sizes = [len(x) for x in damaged]
        if trial % 7 == 0:
            sizes[trial % 2] += int(rng.integers(-3, 4))
        store[:] = guard
        out = store[1:3].view(frames.dtype).reshape(2, 11, 13)
        try:
            decode_run(bytes(b"".join(damaged)), sizes, out)
        except Bslz4Error as err:
            failures += 1
            assert err.index in (0, 1)
        assert np.array_equal(store[0], guard[0]) and np.array_equal(store[3], guard[3])
    assert failures > 500  # much damage is caught (the LZ4 format has no checksum)


def test_random_bytes_never_escape():
    rng = np.random.default_rng(3)
    out = np.empty((1, 64), np.uint16)
    for _ in range(500):
        body = rng.bytes(int(rng.integers(0, 200)))
        header = struct.pack(">QI", 128, int(rng.choice([16, 32, 128, 0, 7])))
        c = header + body
        try:
            decode_run(c, [len(c)], out)
        except Bslz4Error:
            pass


# --- GIL ------------------------------------------------------------------------------------


def test_decoder_is_compiled_without_the_gil():
    assert bslz4._decode.targetoptions.get("nogil") is True


def test_python_runs_while_a_thread_decodes():
    """While one thread decodes a long run, this thread runs Python code and sees the run
    half-decoded (first frame written, last not yet): impossible if the decode held the GIL
    (then this thread could run only before or after the whole call). Works on one core too."""
    frame = frames_of("counts", "u2", (128, 128), 1, np.random.default_rng(4))[0]
    c = chunk(frame)
    count = 1024  # 32 MiB of frames: ~10 ms or more
    out = np.empty((count, 128, 128), np.uint16)
    decode_run(c, [len(c)], out[:1])  # compiled or loaded before timing anything
    assert frame[0, 0] != 0xFFFF and frame[-1, -1] != 0xFFFF
    seen = 0
    for _ in range(3):
        out.fill(0xFFFF)
        worker = threading.Thread(target=decode_run, args=(c * count, [len(c)] * count, out))
        worker.start()
        while worker.is_alive():
            if out[0, 0, 0] != 0xFFFF and out[-1, -1, -1] == 0xFFFF:
                seen += 1
        worker.join()
        if seen:
            break
    assert seen > 0
    assert same_bytes(out[-1], frame)
