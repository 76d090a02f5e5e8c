"""Decompression bombs (issue 12, finding 7): the header is read before anything is decoded.

A small file may declare a huge image (an 873 KB PNG of 30000x30000 took 5.3 GB before the
"too large" error). Every accepted format's header is read first - dimensions, sample size,
frame count - and a file over the budget, with more than one frame, or of a format not on the
list is refused with ``IMAGE_UNREADABLE`` before the decoder allocates anything. The memory
is measured in a child process (peak RSS from ``resource.getrusage``), not guessed.
"""
from __future__ import annotations

import json
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from appliance.capture.images import MAX_PIXELS, check_header, decode_image, read_image
from appliance.errors import ApplianceError, ErrorCode

HUGE = 30_000  # the attack run's side: 900 million pixels, 2.7 GB as BGR
RSS_GROWTH_LIMIT_KB = 200 * 1024  # a refused bomb may cost a little parsing, never the image
BIG_FILE_BYTES = 1 << 29  # over any image within the budget (uncompressed, widest samples)
FORMATS = (".jpg", ".png", ".bmp", ".pgm", ".ppm", ".tif", ".webp")


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png_bomb(width: int = HUGE, height: int = HUGE) -> bytes:
    """A valid 1-bit greyscale PNG: rows of zeros, compressed row by row (no big buffer here)."""
    row = bytes(1 + (width + 7) // 8)  # filter byte 0, then the packed pixels
    packer = zlib.compressobj(9)
    idat = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")


def jpeg_forged_sof(width: int = HUGE, height: int = HUGE) -> bytes:
    """A real small JPEG whose start-of-frame header claims another size."""
    data = bytearray(cv2.imencode(".jpg", np.full((16, 16, 3), 128, np.uint8))[1].tobytes())
    sof = data.index(b"\xff\xc0")
    data[sof + 5:sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def bmp_bomb(width: int = HUGE, height: int = HUGE) -> bytes:
    dib = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 24, 0, 0, 2835, 2835, 0, 0)
    return b"BM" + struct.pack("<IHHI", 14 + len(dib) + 64, 0, 0, 14 + len(dib)) + dib + bytes(64)


def pgm_bomb(width: int = HUGE, height: int = HUGE) -> bytes:
    return f"P5\n# a comment\n{width} {height}\n255\n".encode() + bytes(64)


def tiff_bomb(width: int = HUGE, height: int = HUGE) -> bytes:
    entries = [(256, 4, 1, width), (257, 4, 1, height), (258, 3, 1, 8), (259, 3, 1, 1), (262, 3, 1, 1),
               (273, 4, 1, 8 + 2 + 12 * 9 + 4), (277, 3, 1, 1), (278, 4, 1, height), (279, 4, 1, 64)]
    ifd = struct.pack("<H", len(entries)) + b"".join(struct.pack("<HHII", *e) for e in entries) + struct.pack("<I", 0)
    return b"II*\x00" + struct.pack("<I", 8) + ifd + bytes(64)


def webp_bomb(side: int = 16383) -> bytes:
    """A lossless WebP header at the format's largest side (268 million pixels)."""
    bits = (side - 1) | ((side - 1) << 14)
    payload = b"\x2f" + struct.pack("<I", bits) + bytes(32)
    body = b"WEBP" + b"VP8L" + struct.pack("<I", len(payload)) + payload
    return b"RIFF" + struct.pack("<I", len(body)) + body


BOMBS = {"png": png_bomb, "jpeg": jpeg_forged_sof, "bmp": bmp_bomb, "pgm": pgm_bomb, "tiff": tiff_bomb,
         "webp": webp_bomb}

_MEASURE = """
import json, resource, sys
from appliance.capture.images import read_image
from appliance.errors import ApplianceError
results = {}
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
for path in sys.argv[1:]:
    try:
        shape = read_image(path).shape
        results[path] = ["decoded", list(shape)]
    except ApplianceError as exc:
        results[path] = [exc.code.name, exc.detail]
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"growth_kb": after - before, "results": results}))
"""


def test_bombs_of_every_format_are_refused_before_any_big_allocation(tmp_path):
    paths = []
    for name, build in BOMBS.items():
        path = tmp_path / f"bomb.{name}"
        path.write_bytes(build())
        paths.append(str(path))
    assert (tmp_path / "bomb.png").stat().st_size < 1_000_000  # small file, huge image
    child = subprocess.run([sys.executable, "-c", _MEASURE, *paths], capture_output=True, text=True, timeout=300,
                           cwd=Path(__file__).resolve().parents[2])
    assert child.returncode == 0, child.stderr[-2000:]
    report = json.loads(child.stdout.strip().splitlines()[-1])
    for path in paths:
        code, detail = report["results"][path]
        assert code == ErrorCode.IMAGE_UNREADABLE.name and "too large" in detail, (path, code, detail)
    assert report["growth_kb"] < RSS_GROWTH_LIMIT_KB, report


def _still(shape=(37, 53, 3), seed=0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 255, shape, dtype=np.uint8)


def test_animations_and_multi_page_files_are_refused():
    frames = [_still(seed=1), _still(seed=2)]
    animation = cv2.Animation()
    animation.frames, animation.durations = frames, [100, 100]
    samples = {"multi-page TIFF": cv2.imencodemulti(".tif", frames)[1].tobytes()}
    for ext in (".png", ".webp"):
        ok, encoded = cv2.imencodeanimation(ext, animation)
        assert ok
        samples[f"animated {ext}"] = encoded.tobytes()
    for name, data in samples.items():
        with pytest.raises(ApplianceError) as refused:
            decode_image(data, name)
        assert refused.value.code is ErrorCode.IMAGE_UNREADABLE and "frame" in refused.value.detail, name


@pytest.mark.parametrize("ext", [".gif", ".hdr", ".pfm", ".pam", ".sr"])
def test_formats_off_the_list_are_refused_though_opencv_reads_them(ext):
    ok, encoded = cv2.imencode(ext, _still())
    assert ok and cv2.imdecode(encoded, cv2.IMREAD_COLOR) is not None  # OpenCV would decode it
    with pytest.raises(ApplianceError) as refused:
        decode_image(encoded.tobytes(), f"sample{ext}")
    assert refused.value.code is ErrorCode.IMAGE_UNREADABLE and "not a supported image" in refused.value.detail


@pytest.mark.parametrize("ext", FORMATS)
@pytest.mark.parametrize("shape", [(37, 53, 3), (64, 31), (1, 1, 3)])
def test_every_accepted_format_still_decodes(ext, shape):
    image = _still(shape)
    if ext == ".pgm" and image.ndim == 3:
        image = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    elif ext == ".ppm" and image.ndim == 2:
        image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    ok, encoded = cv2.imencode(ext, image)
    assert ok
    decoded = decode_image(encoded.tobytes(), f"sample{ext}")
    assert decoded.shape == (shape[0], shape[1], 3)
    header = check_header(encoded.tobytes())  # the header says what the decoder makes
    assert (header.height, header.width, header.frames) == (shape[0], shape[1], 1)


def test_budget_edges(tmp_path):
    side = int(MAX_PIXELS ** 0.5)
    with pytest.raises(ApplianceError) as refused:
        decode_image(pgm_bomb(side + 1, side + 1))
    assert f"too large (at most {MAX_PIXELS:,} pixels and" in refused.value.detail  # the budget, readably
    for empty in (pgm_bomb(0, 10), png_bomb(10, 0)):
        with pytest.raises(ApplianceError) as refused:
            decode_image(empty)
        assert refused.value.code is ErrorCode.IMAGE_UNREADABLE
    big = tmp_path / "big.pgm"
    with big.open("wb") as handle:  # sparse: a big file on disk, nothing written
        handle.truncate(BIG_FILE_BYTES)
    with pytest.raises(ApplianceError) as too_big:
        read_image(big)
    assert "too large" in too_big.value.detail


def test_a_header_walk_is_bounded():
    """A file of nothing but fill bytes or empty chunks is refused, not walked byte by byte."""
    png_head = png_bomb(8, 8)[:33]  # signature and IHDR
    for data in (b"\xff\xd8" + b"\xff" * 4_000_000, png_head + _chunk(b"tEXt", b"") * 200_000):
        with pytest.raises(ApplianceError) as refused:
            decode_image(data)
        assert refused.value.code is ErrorCode.IMAGE_UNREADABLE and "before the image data" in refused.value.detail


def test_the_faces_of_the_shared_data_decode(faces):
    for pattern in ("att-orl/s1/*.pgm", "yale/subject01/*.png", "**/*.jpg"):
        path = next(iter(sorted(faces.glob(pattern))))
        assert read_image(path).ndim == 3


_HEADERS = [cv2.imencode(ext, _still((9, 11, 3) if ext != ".pgm" else (9, 11)))[1].tobytes()[:64]
            for ext in FORMATS]


@settings(max_examples=300, derandomize=True, deadline=2000, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.one_of(
    st.binary(max_size=256),
    st.tuples(st.sampled_from(_HEADERS), st.integers(0, 63), st.binary(min_size=1, max_size=8),
              st.binary(max_size=64)).map(lambda t: t[0][:t[1]] + t[2] + t[0][t[1] + len(t[2]):] + t[3]),
))
def test_any_bytes_are_an_image_or_a_clean_refusal(data):
    try:
        image = decode_image(data)
    except ApplianceError as refused:
        assert refused.code is ErrorCode.IMAGE_UNREADABLE
    else:
        assert image.ndim == 3 and image.shape[0] * image.shape[1] <= MAX_PIXELS
