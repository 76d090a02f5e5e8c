"""The card/PIN request on the wire: strict decoding, never a PIN in a log line, and kept out of
the match-request registry (a face request handler refuses it as an unexpected type)."""
from __future__ import annotations

import dataclasses
import json

import pytest

from appliance.errors import ApplianceError, ErrorCode
from appliance.protocol import messages
from appliance.protocol.credential_messages import CredentialRequest


def pin_request(**changes) -> CredentialRequest:
    made = CredentialRequest(messages.new_id(), "door-a", "card|pin", "pin", "C-0001", 1.5, "246810")
    return dataclasses.replace(made, **changes)


def test_a_request_round_trips_and_a_card_request_carries_no_pin_field():
    request = pin_request()
    assert messages.decode(request.encode(), CredentialRequest) == request
    card = pin_request(kind="card", pin="")
    assert "pin" not in json.loads(card.encode()) and messages.decode(card.encode(), CredentialRequest) == card
    assert "246810" not in repr(request) and "C-0001" not in repr(request)


@pytest.mark.parametrize("changes, detail", [
    ({"pin": ""}, "a PIN request carries a PIN"),
    ({"kind": "card"}, "a card request none"),
    ({"pin": "12"}, "pin"),
    ({"card": "C 1"}, "card"),
    ({"card": ""}, "card"),
    ({"mode": "card"}, "mode"),
    ({"kind": "qr"}, "kind"),
])
def test_malformed_requests_are_refused(changes, detail):
    with pytest.raises(ApplianceError) as refused:
        messages.decode(pin_request(**changes).encode(), CredentialRequest)
    assert refused.value.code is ErrorCode.MESSAGE_REJECTED and detail in str(refused.value)


def test_the_match_request_decoder_does_not_know_it():
    with pytest.raises(ApplianceError, match="unexpected message type"):
        messages.decode(pin_request().encode(), messages.MatchRequest)
    with pytest.raises(ApplianceError, match="unexpected message type"):
        messages.decode(pin_request().encode())
