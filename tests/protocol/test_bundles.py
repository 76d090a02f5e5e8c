"""A bundle frame: envelopes out as they went in, and any frame that does not parse refused whole."""
from __future__ import annotations

import re
import struct

import pytest

from appliance.protocol import bundles
from appliance.security.envelope_format import MAGIC as ENVELOPE_MAGIC

ENVELOPES = [b"FAEV-one", b"FAEV-two, longer", b"x"]


def test_envelopes_come_out_in_order_and_the_count_is_what_the_router_charges():
    frame = bundles.pack(ENVELOPES)
    assert bundles.is_bundle(frame) and bundles.unpack(frame) == ENVELOPES
    assert bundles.count(frame) == 3
    assert bundles.count(b"FAEV a sealed envelope") == 1 and bundles.count(b"") == 1  # anything else: one
    assert not bundles.is_bundle(ENVELOPE_MAGIC + b"...")  # one topic may carry both


@pytest.mark.parametrize("frame, why", [
    (b"FABN", "no bundle header"),
    (b"FAEV" + bytes(3), "no bundle header"),
    (struct.pack(">4sBH", b"FABN", 2, 1) + struct.pack(">I", 1) + b"x", "version 2"),
    (struct.pack(">4sBH", b"FABN", 1, 0), "0 envelopes"),
    (struct.pack(">4sBH", b"FABN", 1, bundles.MAX_ENVELOPES + 1), "envelopes (1-"),
    (struct.pack(">4sBH", b"FABN", 1, 2) + struct.pack(">I", 1) + b"x", "truncated"),
    (struct.pack(">4sBH", b"FABN", 1, 1) + struct.pack(">I", 9) + b"short", "empty or truncated"),
    (struct.pack(">4sBH", b"FABN", 1, 1) + struct.pack(">I", 0), "empty or truncated"),
    (bundles.pack([b"x"]) + b"tail", "bytes after the last envelope"),
    (b"FABN" + bytes(bundles.MAX_BUNDLE_BYTES), "over the"),
])
def test_a_broken_frame_is_refused_whole(frame, why):
    with pytest.raises(bundles.BundleMalformed, match=re.escape(why)):
        bundles.unpack(frame)


def test_a_bundle_is_bounded_in_count_and_size():
    assert bundles.fits([b"x"] * bundles.MAX_ENVELOPES) and not bundles.fits([b"x"] * (bundles.MAX_ENVELOPES + 1))
    assert not bundles.fits([bytes(bundles.MAX_BUNDLE_BYTES)]) and not bundles.fits([])
    for refused in ([], [b"x"] * (bundles.MAX_ENVELOPES + 1), [b""], [bytes(bundles.MAX_BUNDLE_BYTES)]):
        with pytest.raises(ValueError):
            bundles.pack(refused)
    # the router never charges more than a frame may carry
    assert bundles.count(struct.pack(">4sBH", b"FABN", 1, 60_000)) == bundles.MAX_ENVELOPES
