"""The ``[door_io]`` table: defaults change nothing, the wiring rules name the key at fault."""
from __future__ import annotations

import pytest

from appliance.config import with_overrides
from appliance.config.tables import Config
from appliance.errors import ApplianceError, ErrorCode


def test_the_defaults_fit_no_hardware():
    door_io = Config().door_io
    assert door_io.relay_pin is None and not door_io.wiegand_fitted and door_io.osdp_role == "off"
    assert door_io.lock_type == "fail-secure"


@pytest.mark.parametrize("values, message", [
    ({"relay_pin": 17, "tamper_pin": 17}, "door_io.tamper_pin: BCM pin 17 is already relay_pin"),
    ({"wiegand_d0_pin": 5}, "door_io.wiegand_d0_pin: Wiegand needs both"),
    ({"facility_code": 256}, "door_io.facility_code: the 26-bit format carries facility codes up to 255"),
    ({"osdp_role": "reader"}, "door_io.osdp_port: an OSDP role needs osdp_port and osdp_scbk_file"),
    ({"held_open_s": 0.5}, "door_io.held_open_s"),
    ({"debounce_ms": 0}, "door_io.debounce_ms"),
    ({"wiegand_format": 37}, "door_io.wiegand_format"),
    ({"door_sensor_pin": 41}, "door_io.door_sensor_pin"),
])
def test_a_bad_wiring_is_refused_naming_the_key(values, message):
    with pytest.raises(ApplianceError) as refused:
        with_overrides(Config(), door_io=values)
    assert refused.value.code is ErrorCode.CONFIG_INVALID and message in refused.value.detail


def test_a_34_bit_site_takes_a_16_bit_facility_code():
    config = with_overrides(Config(), door_io={"wiegand_format": 34, "facility_code": 65535})
    assert config.door_io.facility_code == 65535
