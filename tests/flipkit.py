"""Single-bit corruptions of a sealed message, for the envelope tests' reason tables."""
from __future__ import annotations

from collections.abc import Callable, Iterable


def flipped(data: bytes, offset: int, bit: int) -> bytes:
    """``data`` with bit ``bit`` of byte ``offset`` inverted."""
    damaged = bytearray(data)
    damaged[offset] ^= 1 << bit
    return bytes(damaged)


def unexpected_flips(data: bytes, offsets: Iterable[int], reason_of: Callable[[bytes], object],
                     expected: Callable[[int, int], set]) -> list[tuple[int, int, object]]:
    """Every bit of ``offsets`` flipped in turn: (offset, bit, reason) where ``reason_of`` the
    damaged bytes is not among ``expected(offset, bit)``; empty when every flip meets its table."""
    return [(offset, bit, reason) for offset in offsets for bit in range(8)
            if (reason := reason_of(flipped(data, offset, bit))) not in expected(offset, bit)]
