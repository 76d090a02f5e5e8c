"""Numeric options are refused out of range by argparse itself, at parse time (appliance.cli.arg_types)."""
from __future__ import annotations

import argparse

import pytest

from appliance.cli import arg_types
from appliance.cli.main import main
from parserkit import arguments

# type, values accepted (the edges), values refused just outside, words of the range in the message
CASES = [
    (arg_types.positive_int, ["1", "2", "1000000"], ["0", "-1"], "1 or more"),
    (arg_types.non_negative_int, ["0", "1", "7"], ["-1"], "0 or more"),
    (arg_types.positive_float, ["1e-9", "0.5", "90"], ["0", "-0.0", "-1e-9"], "above 0"),
    (arg_types.non_negative_float, ["0", "-0.0", "2.5"], ["-1e-9", "-1"], "0 or more"),
    (arg_types.rate, ["1e-9", "0.001", "0.999999"], ["0", "1", "-0.1", "1.5"], "strictly between 0 and 1"),
    (arg_types.rate_or_zero, ["0", "0.005", "0.999999"], ["1", "-1e-9"], "0 or more and below 1"),
    (arg_types.fraction, ["1e-9", "0.7", "1"], ["0", "1.000001", "-0.5"], "above 0 and at most 1"),
    (arg_types.port, ["1", "8883", "65535"], ["0", "65536", "-1"], "1 to 65535"),
]
INTS = [arg_types.positive_int, arg_types.non_negative_int, arg_types.port]
FLOATS = [arg_types.positive_float, arg_types.non_negative_float, arg_types.rate, arg_types.rate_or_zero,
          arg_types.fraction]


def _parser(kind) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="appliance-test")
    parser.add_argument("--x", type=kind)
    return parser


def _refused(kind, value: str, capsys) -> str:
    with pytest.raises(SystemExit) as excinfo:
        _parser(kind).parse_args([f"--x={value}"])  # '=': '-inf' is a value, not an option
    assert excinfo.value.code == 2
    err = capsys.readouterr().err
    assert "error: argument --x: " in err
    return err


@pytest.mark.parametrize(("kind", "accepted", "refused", "words"), CASES, ids=lambda c: getattr(c, "__name__", ""))
def test_each_type_accepts_its_edges_and_refuses_just_outside(kind, accepted, refused, words, capsys):
    for value in accepted:
        assert _parser(kind).parse_args([f"--x={value}"]).x == float(value)
    for value in refused:
        err = _refused(kind, value, capsys)
        assert value in err and words in err, err


@pytest.mark.parametrize("kind", FLOATS, ids=lambda k: k.__name__)
@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "1e999"])
def test_the_float_types_refuse_what_is_not_finite(kind, value, capsys):
    assert "is not a finite number" in _refused(kind, value, capsys)


@pytest.mark.parametrize("kind", INTS + FLOATS, ids=lambda k: k.__name__)
@pytest.mark.parametrize("value", ["abc", "", "1,5"])
def test_every_type_refuses_what_is_not_a_number(kind, value, capsys):
    err = _refused(kind, value, capsys)
    assert repr(value) in err and "is not a" in err


@pytest.mark.parametrize("kind", INTS, ids=lambda k: k.__name__)
def test_the_integer_types_refuse_a_fraction(kind, capsys):
    assert "'2.5' is not a whole number" in _refused(kind, "2.5", capsys)
    assert isinstance(_parser(kind).parse_args(["--x=2"]).x, int)


# options left with a bare int/float type: their value is bounded elsewhere, with a clear message
BOUNDED_ELSEWHERE = {
    ("bench load", "--device-niceness"),  # choices=range(0, 20): argparse refuses the rest itself
    ("bench load", "--replicas"),  # choices=range(1, MAX_LOAD_REPLICAS + 1), likewise
    ("edge", "--fps"),  # goes into [device] fps, refused below 0 by the configuration check (exit 2)
    ("edge", "--cool-down"),  # goes into [device] cool_down_s, refused below 0 by the configuration check
    ("console", "--port"),  # goes into [console] port, refused outside 1-65535 by the configuration check
}


def test_no_numeric_option_takes_a_bare_int_or_float():
    """A bare int/float lets a negative count or a fraction of 1.5 run into the code: each
    numeric option takes one of ``appliance.cli.arg_types`` (or is in the list above, with why)."""
    found = {(command, (action.option_strings or [action.dest])[-1]) for command, action in arguments()
             if action.type in (int, float)}
    assert found - BOUNDED_ELSEWHERE == set()
    assert BOUNDED_ELSEWHERE - found == set()  # the list is kept to what still needs it


@pytest.mark.parametrize(("argv", "message"), [
    (["bench", "envelope", "--payload", "-1"], "argument --payload: -1 is not a whole number of 0 or more"),
    (["bench", "matcher", "--devices", "0", "--sizes", "1000"], "argument --devices: 0 is not a positive whole"),
    (["bench", "matcher", "--sizes", "1000", "0"], "argument --sizes: 0 is not a positive whole"),
    (["eval", "identification", "/nonexistent", "--gallery-fraction", "1.5"],
     "argument --gallery-fraction: 1.5 is not a fraction above 0 and at most 1"),
    (["eval", "identification", "/nonexistent", "--gallery-images", "0"], "argument --gallery-images: 0 is not a"),
    (["demo", "--enroll", "0"], "argument --enroll: 0 is not a positive whole number"),
    (["demo", "--enroll", "-1"], "argument --enroll: -1 is not a positive whole number"),
    (["admin", "token", "create", "--account", "a", "--scope", "people:read", "--days", "nan"],
     "argument --days: nan is not a finite number"),
    (["provision", "broker-config", "--port", "70000"], "argument --port: 70000 is not a port number (1 to 65535)"),
])
def test_the_cli_refuses_an_option_out_of_range_before_running(argv, message, capsys):
    with pytest.raises(SystemExit) as excinfo:
        main(argv)
    assert excinfo.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "usage: appliance" in err, err


def test_calibrate_refuses_a_target_fmr_that_is_not_a_rate_before_reading_the_dataset(tmp_path, capsys):
    for value in ("0", "1", "-0.5"):
        with pytest.raises(SystemExit) as excinfo:
            main(["calibrate", str(tmp_path), f"--target-fmr={value}"])
        assert excinfo.value.code == 2
        assert f"argument --target-fmr: {value} is not a rate strictly between 0 and 1" in capsys.readouterr().err
