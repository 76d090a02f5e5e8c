"""Image headers read before decoding: which format, how big, how many frames.

Why: OpenCV allocates the whole image as soon as it has read the header, so a small file that
declares a huge image (a PNG of compressed zeros, a JPEG with a forged start-of-frame) costs
gigabytes before any check on the decoded array can refuse it. Each accepted format gets a
short parser of the few fields that decide the memory a decoder takes - width, height, bytes
per pixel, frame count - and nothing else is decoded: the formats OpenCV could also read but
a face image never needs (GIF, HDR, PFM, PAM, Sun raster, AVIF, JPEG 2000, ...) are refused,
each being one more decoder to attack. The parsers only read; ``HeaderUnreadable`` says why a
header is not one of ours, whatever the bytes (``struct`` and index errors included).
"""
from __future__ import annotations

import re
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass

# the file names of the formats read here (what a folder of photos may hold)
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".pgm", ".ppm", ".bmp", ".tif", ".tiff", ".webp")
MAX_FRAMES_COUNTED = 1024  # enough to name the count of a multi-page file, bounded for loops
# markers, fill bytes or chunks walked before the image data: real files have tens, and a file
# of nothing else must not keep the parser busy for each of its bytes
MAX_HEADER_STEPS = 65_536
DECODED_CHANNELS = 3  # what the decoder hands back (BGR): the least a pixel costs
PNM_HEADER_BYTES = 4096  # magic, comments, width, height, maxval: all within this
EIGHT_BIT_MAX = 255

# JPEG markers: start-of-frame (all but DHT C4, JPG C8, DAC CC); no length: TEM and RST0-7
_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
_JPEG_STANDALONE = frozenset({0x01, *range(0xD0, 0xD8)})
_JPEG_FILL, _JPEG_SOS, _JPEG_EOI = 0xFF, 0xDA, 0xD9
_PNG_CHANNELS = {0: 1, 2: 3, 3: 3, 4: 2, 6: 4}  # colour type -> channels (a palette expands to RGB)
_PNG_SIXTEEN_BITS = 16
_BMP_CORE_HEADER = 12  # OS/2 1.x: 16-bit sides; every later header has signed 32-bit sides
_BMP_INFO_HEADER = 40
_TIFF_WIDTH, _TIFF_HEIGHT, _TIFF_BITS, _TIFF_SAMPLES = 256, 257, 258, 277
_TIFF_SHORT, _TIFF_LONG = 3, 4
_TIFF_CLASSIC = 42  # 43 is BigTIFF: not accepted
_TIFF_INLINE_BYTES = 4
_WEBP_SIDE_BITS = 14
_WEBP_LOSSLESS_SIGNATURE = 0x2F
_WEBP_VP8_START = b"\x9d\x01\x2a"
_WEBP_ANIMATION_FLAG = 0x02
_WEBP_CHANNELS = 4  # libwebp decodes to BGRA before OpenCV drops alpha
_PNM_SPACE = rb"(?:\s|#[^\r\n]*[\r\n])+"
_PNM = re.compile(rb"P([1-6])" + _PNM_SPACE + rb"(\d{1,10})" + _PNM_SPACE + rb"(\d{1,10})"
                  + rb"(?:" + _PNM_SPACE + rb"(\d{1,10}))?")
_PNM_COLOUR = b"36"  # P3, P6: three samples per pixel


class HeaderUnreadable(ValueError):
    """The bytes are not a header of an accepted format; the text says why."""


@dataclass(frozen=True)
class ImageHeader:
    format: str
    width: int
    height: int
    bytes_per_pixel: int = DECODED_CHANNELS  # the decoder's widest buffer: channels x bytes per sample
    frames: int = 1

    @property
    def pixels(self) -> int:
        return self.width * self.height


def read_header(data: bytes) -> ImageHeader:
    """The header of a JPEG, PNG, BMP, PGM/PPM (PNM), TIFF or WebP file; ``HeaderUnreadable``
    for anything else, or a header cut short or malformed."""
    for magic, parse in _PARSERS:
        if data.startswith(magic):
            try:
                return parse(data)
            except HeaderUnreadable:
                raise
            except (struct.error, IndexError, ValueError):
                raise HeaderUnreadable(f"{parse.__name__.strip('_').upper()} header cut short or malformed") from None
    raise HeaderUnreadable("not a supported image (JPEG, PNG, BMP, PGM/PPM, TIFF or WebP)")


def _steps(what: str) -> Iterator[int]:
    """At most ``MAX_HEADER_STEPS`` turns of a header walk, then ``HeaderUnreadable``."""
    yield from range(MAX_HEADER_STEPS)
    raise HeaderUnreadable(f"more than {MAX_HEADER_STEPS} {what} before the image data")


def _widest(channels: int, bytes_per_sample: int) -> int:
    return max(DECODED_CHANNELS, channels * bytes_per_sample)


def _jpeg(data: bytes) -> ImageHeader:
    """Walk the marker segments up to the first scan; every frame header before it counts
    (libjpeg refuses a second one, so more than one is no image of ours either)."""
    pos, frames, sides, widest = 2, 0, (0, 0), DECODED_CHANNELS
    for _ in _steps("JPEG markers"):
        if data[pos] != _JPEG_FILL:
            raise HeaderUnreadable("JPEG marker expected")
        marker = data[pos + 1]
        if marker == _JPEG_FILL:
            pos += 1
        elif marker in _JPEG_STANDALONE:
            pos += 2
        elif marker in (_JPEG_SOS, _JPEG_EOI):
            break
        else:
            (length,) = struct.unpack_from(">H", data, pos + 2)
            if marker in _JPEG_SOF:
                precision, height, width, components = struct.unpack_from(">BHHB", data, pos + 4)
                frames, sides = frames + 1, (max(sides[0], width), max(sides[1], height))
                widest = max(widest, _widest(components, 2 if precision > 8 else 1))
            pos += 2 + length
    if not frames:
        raise HeaderUnreadable("JPEG without a frame header")
    return ImageHeader("JPEG", *sides, widest, frames)


def _png(data: bytes) -> ImageHeader:
    """IHDR comes first; an animation announces itself (acTL) before the first image data."""
    if data[12:16] != b"IHDR":
        raise HeaderUnreadable("PNG without IHDR first")
    width, height, depth, colour = struct.unpack_from(">IIBB", data, 16)
    if colour not in _PNG_CHANNELS:
        raise HeaderUnreadable(f"PNG colour type {colour}")
    frames, pos = 1, 8
    for _ in _steps("PNG chunks"):
        if pos + 8 > len(data):
            break
        length, kind = struct.unpack_from(">I4s", data, pos)
        if kind == b"acTL":
            (frames,) = struct.unpack_from(">I", data, pos + 8)
        if kind in (b"IDAT", b"IEND"):
            break
        pos += 12 + length  # length, type, body, CRC
    sample = 2 if depth == _PNG_SIXTEEN_BITS else 1
    return ImageHeader("PNG", width, height, _widest(_PNG_CHANNELS[colour], sample), frames)


def _bmp(data: bytes) -> ImageHeader:
    (dib,) = struct.unpack_from("<I", data, 14)
    if dib == _BMP_CORE_HEADER:
        width, height, _, bits = struct.unpack_from("<HHHH", data, 18)
    elif dib >= _BMP_INFO_HEADER:
        width, height, _, bits = struct.unpack_from("<iiHH", data, 18)
    else:
        raise HeaderUnreadable(f"BMP header of {dib} bytes")
    return ImageHeader("BMP", width, abs(height), _widest(1, -(-bits // 8)))  # height < 0: rows top down


def _pnm(data: bytes) -> ImageHeader:
    found = _PNM.match(data[:PNM_HEADER_BYTES])
    if found is None:
        raise HeaderUnreadable("PNM header without width and height")
    kind, width, height, maxval = found.groups()
    sample = 2 if maxval is not None and int(maxval) > EIGHT_BIT_MAX else 1
    return ImageHeader("PNM", int(width), int(height), _widest(3 if kind in _PNM_COLOUR else 1, sample))


def _tiff(data: bytes) -> ImageHeader:
    """The first directory's sides and sample layout; every directory is a page."""
    order = "<" if data[:2] == b"II" else ">"
    magic, offset = struct.unpack_from(order + "HI", data, 2)
    if magic != _TIFF_CLASSIC:
        raise HeaderUnreadable("BigTIFF or not TIFF")
    first: dict[int, int] | None = None
    frames, seen = 0, set()
    while offset and frames < MAX_FRAMES_COUNTED:
        if offset in seen:
            raise HeaderUnreadable("TIFF directories form a loop")
        seen.add(offset)
        (count,) = struct.unpack_from(order + "H", data, offset)
        if first is None:
            first = {}
            for index in range(count):
                tag, kind, number, raw = struct.unpack_from(order + "HHI4s", data, offset + 2 + 12 * index)
                if tag in (_TIFF_WIDTH, _TIFF_HEIGHT, _TIFF_BITS, _TIFF_SAMPLES):
                    first[tag] = _tiff_first_value(data, order, kind, number, raw)
        frames += 1
        (offset,) = struct.unpack_from(order + "I", data, offset + 2 + 12 * count)
    if first is None or _TIFF_WIDTH not in first or _TIFF_HEIGHT not in first:
        raise HeaderUnreadable("TIFF without width and height")
    sample = -(-first.get(_TIFF_BITS, 1) // 8)
    return ImageHeader("TIFF", first[_TIFF_WIDTH], first[_TIFF_HEIGHT],
                       _widest(first.get(_TIFF_SAMPLES, 1), sample), frames)


def _tiff_first_value(data: bytes, order: str, kind: int, number: int, raw: bytes) -> int:
    """The first value of a SHORT or LONG field: inline when the values fit in 4 bytes."""
    if kind not in (_TIFF_SHORT, _TIFF_LONG) or number < 1:
        raise HeaderUnreadable(f"TIFF field of type {kind}")
    code = "H" if kind == _TIFF_SHORT else "I"
    if number * struct.calcsize(code) <= _TIFF_INLINE_BYTES:
        return struct.unpack_from(order + code, raw)[0]
    return struct.unpack_from(order + code, data, struct.unpack_from(order + "I", raw)[0])[0]


def _webp(data: bytes) -> ImageHeader:
    if data[8:12] != b"WEBP":
        raise HeaderUnreadable("RIFF but not WebP")
    kind, body = data[12:16], 20
    if kind == b"VP8 ":
        if data[body + 3:body + 6] != _WEBP_VP8_START:
            raise HeaderUnreadable("WebP VP8 frame without its start code")
        width, height = struct.unpack_from("<HH", data, body + 6)
        mask = (1 << _WEBP_SIDE_BITS) - 1
        return ImageHeader("WebP", width & mask, height & mask, _WEBP_CHANNELS)
    if kind == b"VP8L":
        if data[body] != _WEBP_LOSSLESS_SIGNATURE:
            raise HeaderUnreadable("WebP lossless without its signature")
        (bits,) = struct.unpack_from("<I", data, body + 1)
        mask = (1 << _WEBP_SIDE_BITS) - 1
        return ImageHeader("WebP", (bits & mask) + 1, ((bits >> _WEBP_SIDE_BITS) & mask) + 1, _WEBP_CHANNELS)
    if kind == b"VP8X":
        if len(data) < body + 10:
            raise HeaderUnreadable("WebP extended header cut short")
        width = int.from_bytes(data[body + 4:body + 7], "little") + 1
        height = int.from_bytes(data[body + 7:body + 10], "little") + 1
        frames = _webp_frames(data) if data[body] & _WEBP_ANIMATION_FLAG else 1
        return ImageHeader("WebP", width, height, _WEBP_CHANNELS, frames)
    raise HeaderUnreadable(f"WebP chunk {kind!r}")


def _webp_frames(data: bytes) -> int:
    """Frames of an animated WebP (ANMF chunks); at least two, it says it is animated."""
    frames, pos = 0, 12
    for _ in _steps("WebP chunks"):
        if pos + 8 > len(data) or frames >= MAX_FRAMES_COUNTED:
            break
        kind, size = data[pos:pos + 4], struct.unpack_from("<I", data, pos + 4)[0]
        frames += kind == b"ANMF"
        pos += 8 + size + (size & 1)  # chunks are padded to an even size
    return max(frames, 2)


_PARSERS: tuple[tuple[bytes, Callable[[bytes], ImageHeader]], ...] = (
    (b"\xff\xd8", _jpeg), (b"\x89PNG\r\n\x1a\n", _png), (b"BM", _bmp), (b"II*\x00", _tiff), (b"MM\x00*", _tiff),
    *((f"P{kind}".encode(), _pnm) for kind in "123456"), (b"RIFF", _webp))
