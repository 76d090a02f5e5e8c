"""The Wiegand output bit-banged on gpiozero MockFactory pins: the recorded D0/D1 edges decode
back to the frame, with the pulse width and bit interval the panel expects."""
from __future__ import annotations

from statistics import median

import pytest

from appliance.edge.door_io import wiegand
from appliance.edge.door_io.wiegand import H10301, H10306
from appliance.edge.door_io.wiegand_line import INTERVAL_S, PULSE_S, WiegandLine
from appliance.errors import ApplianceError, ErrorCode

D0, D1 = 5, 6
SLACK_S = 0.002  # how late the sender typically wakes for the next bit (a loaded CPU may be later once)


def _pulses(pin) -> list[tuple[float, float]]:
    """(start, width) of each low pulse a MockPin recorded (its timestamps are deltas)."""
    at, low_since, pulses = 0.0, None, []
    for state in pin.states[1:]:
        at += state.timestamp
        if not state.state:
            low_since = at
        elif low_since is not None:
            pulses.append((low_since, at - low_since))
            low_since = None
    return pulses


def _received(pins) -> list[tuple[float, int, float]]:
    """(start, bit, width) of every pulse on either line, in the order sent."""
    edges = sorted([(start, 0, width) for start, width in _pulses(pins.pin(D0))]
                   + [(start, 1, width) for start, width in _pulses(pins.pin(D1))])
    return edges


@pytest.mark.parametrize("fmt, facility, card", [(H10301, 18, 4242), (H10306, 1000, 65000)])
def test_a_grant_is_sent_as_a_frame_that_decodes_back(pins, fmt, facility, card):
    line = WiegandLine(D0, D1, fmt, facility, pin_factory=pins)
    assert pins.pin(D0).state and pins.pin(D1).state  # both lines idle high
    pins.pin(D0).clear_states()
    pins.pin(D1).clear_states()
    line.announce(card)
    edges = _received(pins)
    bits = [bit for _, bit, _ in edges]
    assert wiegand.decode(bits) == (fmt, facility, card)
    widths = sorted(width for _, _, width in edges)
    assert widths[0] >= PULSE_S and median(widths) < INTERVAL_S / 4
    gaps = [later[0] - earlier[0] for earlier, later in zip(edges, edges[1:])]
    assert min(gaps) >= INTERVAL_S * 0.95 and median(gaps) < INTERVAL_S + SLACK_S
    assert pins.pin(D0).state and pins.pin(D1).state
    line.close()


def test_a_card_number_the_format_cannot_carry_sends_nothing(pins):
    line = WiegandLine(D0, D1, H10301, 18, pin_factory=pins)
    pins.pin(D0).clear_states()
    with pytest.raises(ApplianceError) as refused:
        line.announce(70000)
    assert refused.value.code is ErrorCode.CARD_NUMBER_INVALID and len(pins.pin(D0).states) == 1
    line.close()


def test_a_facility_code_the_format_cannot_carry_fails_at_start(pins):
    with pytest.raises(ApplianceError):
        WiegandLine(D0, D1, H10301, 300, pin_factory=pins)
