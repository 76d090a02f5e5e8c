"""Wiegand frames: the 26-bit H10301 and 34-bit H10306 formats, encoded and decoded.

Both are ``even parity + facility code + card number + odd parity``; the leading bit makes
the first half of the data bits even, the trailing bit makes the second half odd (H10301:
8 + 16 data bits, halves of 12; H10306: 16 + 16, halves of 16). Pure functions: the line
that sends a frame is ``wiegand_line``.
"""
from __future__ import annotations

from dataclasses import dataclass

from appliance.errors import ApplianceError, ErrorCode


@dataclass(frozen=True)
class WiegandFormat:
    name: str
    facility_bits: int
    card_bits: int

    @property
    def data_bits(self) -> int:
        return self.facility_bits + self.card_bits

    @property
    def length(self) -> int:
        """Bits on the wire: the data and the two parity bits."""
        return self.data_bits + 2

    @property
    def max_facility(self) -> int:
        return (1 << self.facility_bits) - 1

    @property
    def max_card(self) -> int:
        return (1 << self.card_bits) - 1


H10301 = WiegandFormat("H10301", facility_bits=8, card_bits=16)
H10306 = WiegandFormat("H10306", facility_bits=16, card_bits=16)
FORMATS = {H10301.length: H10301, H10306.length: H10306}


def format_for(length: int) -> WiegandFormat:
    try:
        return FORMATS[length]
    except KeyError:
        raise ApplianceError(ErrorCode.CARD_NUMBER_INVALID,
                             f"no Wiegand format of {length} bits (known: {sorted(FORMATS)})") from None


def _ones(bits: list[int]) -> int:
    return sum(bits)


def encode(fmt: WiegandFormat, facility: int, card: int) -> list[int]:
    """The frame's bits, first sent first."""
    if not 0 <= facility <= fmt.max_facility:
        raise ApplianceError(ErrorCode.CARD_NUMBER_INVALID,
                             f"facility code {facility} outside 0..{fmt.max_facility} ({fmt.name})")
    if not 0 <= card <= fmt.max_card:
        raise ApplianceError(ErrorCode.CARD_NUMBER_INVALID,
                             f"card number {card} outside 0..{fmt.max_card} ({fmt.name})")
    payload = (facility << fmt.card_bits) | card
    data = [(payload >> shift) & 1 for shift in range(fmt.data_bits - 1, -1, -1)]
    half = fmt.data_bits // 2
    even = _ones(data[:half]) % 2  # makes the leading half (with this bit) even
    odd = 1 - _ones(data[half:]) % 2  # makes the trailing half (with this bit) odd
    return [even, *data, odd]


def decode(bits: list[int]) -> tuple[WiegandFormat, int, int]:
    """``(format, facility, card)`` of a received frame; a wrong length or parity is refused."""
    fmt = format_for(len(bits))
    data = bits[1:-1]
    half = fmt.data_bits // 2
    if (bits[0] + _ones(data[:half])) % 2 != 0 or (_ones(data[half:]) + bits[-1]) % 2 != 1:
        raise ApplianceError(ErrorCode.CARD_NUMBER_INVALID, f"{fmt.name} frame fails its parity check")
    payload = int("".join(map(str, data)), 2)
    return fmt, payload >> fmt.card_bits, payload & fmt.max_card


def to_int(bits: list[int]) -> int:
    """A frame as one integer (first bit most significant), as panels and datasheets print it."""
    return int("".join(map(str, bits)), 2)


def to_bytes(bits: list[int]) -> bytes:
    """A frame packed most significant bit first and padded with zeros to whole bytes (OSDP raw card data)."""
    padded = bits + [0] * (-len(bits) % 8)
    return bytes(int("".join(map(str, padded[i:i + 8])), 2) for i in range(0, len(padded), 8))


def from_bytes(data: bytes, length: int) -> list[int]:
    """The first ``length`` bits of ``data``, most significant bit first."""
    if length > len(data) * 8:
        raise ApplianceError(ErrorCode.CARD_NUMBER_INVALID, f"{length} bits announced, {len(data) * 8} received")
    return [(data[i // 8] >> (7 - i % 8)) & 1 for i in range(length)]
