"""Wiegand H10301 (26-bit) and H10306 (34-bit) frames against vectors worked out by hand from
the format definitions, round trips, and refusals of bad parity, length and range."""
from __future__ import annotations

import pytest

from appliance.edge.door_io import wiegand
from appliance.edge.door_io.wiegand import H10301, H10306
from appliance.errors import ApplianceError, ErrorCode

# (format, facility, card, frame as an integer, first bit most significant), worked out by hand:
# 26-bit, FC 1, card 1: data 00000001 0000|000000000001: one 1 in the first 12 -> even parity 1; one 1
# in the last 12 -> odd parity 0: 1 00000001 0000000000000001 0 = 2^25 + 2^17 + 2^1
# 26-bit, FC 0, card 0: no ones -> even 0, odd 1 = 1
# 26-bit, FC 255, card 65535: twelve ones each half -> even 0, odd 1: 0 + 25 ones = 2^25 - 1
# 26-bit, FC 18, card 4242: 00010010 0001|000010010010: 3 ones -> even 1; 3 ones -> odd 0
# 34-bit, FC 1, card 1: one 1 in each half of 16 -> even 1, odd 0 = 2^33 + 2^17 + 2^1
# 34-bit, FC 65535, card 0: sixteen ones -> even 0; no ones -> odd 1 = 0 + 16 ones + 16 zeros + 1
VECTORS = [
    (H10301, 1, 1, (1 << 25) | (1 << 17) | (1 << 1)),
    (H10301, 0, 0, 1),
    (H10301, 255, 65535, (1 << 25) - 1),
    (H10301, 18, 4242, (1 << 25) | (18 << 17) | (4242 << 1)),
    (H10306, 1, 1, (1 << 33) | (1 << 17) | (1 << 1)),
    (H10306, 65535, 0, (0xFFFF << 17) | 1),
]


@pytest.mark.parametrize("fmt, facility, card, frame", VECTORS)
def test_known_frames(fmt, facility, card, frame):
    bits = wiegand.encode(fmt, facility, card)
    assert len(bits) == fmt.length and wiegand.to_int(bits) == frame
    assert wiegand.decode(bits) == (fmt, facility, card)


@pytest.mark.parametrize("fmt", [H10301, H10306])
def test_round_trip_and_parity_of_every_single_bit_card(fmt):
    for shift in range(fmt.card_bits):
        card = 1 << shift
        bits = wiegand.encode(fmt, fmt.max_facility // 3, card)
        half = fmt.data_bits // 2
        assert sum(bits[:half + 1]) % 2 == 0 and sum(bits[half + 1:]) % 2 == 1
        assert wiegand.decode(bits)[2] == card


def test_a_flipped_bit_fails_the_parity_check():
    bits = wiegand.encode(H10301, 18, 4242)
    for position in range(len(bits)):
        damaged = list(bits)
        damaged[position] ^= 1
        with pytest.raises(ApplianceError) as refused:
            wiegand.decode(damaged)
        assert refused.value.code is ErrorCode.CARD_NUMBER_INVALID and "parity" in refused.value.detail


@pytest.mark.parametrize("fmt, facility, card", [(H10301, 256, 1), (H10301, 1, 65536), (H10306, -1, 1)])
def test_numbers_the_format_cannot_carry_are_refused(fmt, facility, card):
    with pytest.raises(ApplianceError) as refused:
        wiegand.encode(fmt, facility, card)
    assert refused.value.code is ErrorCode.CARD_NUMBER_INVALID


def test_an_unknown_length_is_refused():
    with pytest.raises(ApplianceError, match="no Wiegand format of 27 bits"):
        wiegand.decode([0] * 27)


def test_bytes_pack_most_significant_bit_first_and_unpack_back():
    bits = wiegand.encode(H10301, 1, 1)
    packed = wiegand.to_bytes(bits)
    assert packed == bytes([0b10000000, 0b10000000, 0b00000000, 0b10000000])
    assert wiegand.from_bytes(packed, 26) == bits
    with pytest.raises(ApplianceError):
        wiegand.from_bytes(packed[:2], 26)
