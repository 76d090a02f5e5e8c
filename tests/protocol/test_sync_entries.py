"""Delta entries: the matcher writes them, the device reads them, with one encoding of a
template (the one ``match_request`` uses) and without building any other message."""
from __future__ import annotations

import numpy as np
import pytest

from appliance.protocol import messages
from appliance.protocol.sync_entries import TombstoneEntry, UpsertEntry, decode_template, encode_template


def test_a_template_survives_the_wire_bit_for_bit_in_the_match_request_encoding():
    vector = np.random.default_rng(0).normal(size=512).astype(np.float32)
    text = encode_template(vector)
    assert text == messages.MatchRequest.pack_vector(vector)
    assert decode_template(text).dtype == np.float32 and (decode_template(text) == vector).all()
    with pytest.raises(ValueError):
        decode_template("not base64!")


def test_entries_round_trip_through_a_validated_delta():
    vector = np.ones(4, np.float32) / 2
    upsert = UpsertEntry("s-1", 7, vector, "A** L***", "ab" * 32)
    delta = messages.Delta(messages.new_id(), "changes", 6, 8, 8, "pack", "1", upserts=[upsert.to_wire()],
                           tombstones=[TombstoneEntry("s-2", 8).to_wire()])
    received = messages.decode(delta.encode(), messages.Delta)
    assert received.upserts[0] == {"s": "s-1", "r": 7, "t": encode_template(vector), "n": "A** L***", "c": "ab" * 32}
    read = UpsertEntry.from_wire(received.upserts[0])
    assert read == upsert and (read.vector == vector).all()
    assert TombstoneEntry.from_wire(received.tombstones[0]) == TombstoneEntry("s-2", 8)
