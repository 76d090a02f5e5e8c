"""``type=`` callables for the CLI's numeric options: a value out of range is refused at parse time.

argparse itself refuses it, with its standard ``error: argument --x: ...`` line and exit status 2,
before any configuration, model, dataset or store loads. Bare ``type=int``/``type=float`` let a
negative size or a gallery fraction of 1.5 run into the code, to end as an internal error or a
report of nonsense. Each callable names the value and the range allowed; floats must be finite.

Standard library only: this module is imported when the parser is built, and building it must
not load the heavy stack (tests/cli/test_cli_startup.py).
"""
from __future__ import annotations

import argparse
import math


def _integer(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None


def _number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text} is not a finite number")
    return value


def positive_int(text: str) -> int:
    """A count, a size: a whole number, 1 or more."""
    value = _integer(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not a positive whole number (1 or more)")
    return value


def non_negative_int(text: str) -> int:
    """A seed, a number of warm-up frames: a whole number, 0 or more."""
    value = _integer(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text} is not a whole number of 0 or more")
    return value


def positive_float(text: str) -> float:
    """A rate, a length of time: a finite number above 0."""
    value = _number(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text} is not a number above 0")
    return value


def non_negative_float(text: str) -> float:
    """A pause, a time-out where 0 means none: a finite number, 0 or more."""
    value = _number(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text} is not a number of 0 or more")
    return value


def rate(text: str) -> float:
    """A target error rate (FMR, FAR, APCER, BPCER): a fraction strictly between 0 and 1."""
    value = _number(text)
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not a rate strictly between 0 and 1 (e.g. 0.001)")
    return value


def rate_or_zero(text: str) -> float:
    """A rate that may be 0 (a floor that rejects none of the calibration set): 0 or more, below 1."""
    value = _number(text)
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not a rate of 0 or more and below 1")
    return value


def fraction(text: str) -> float:
    """A share of a whole: above 0, at most 1."""
    value = _number(text)
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"{text} is not a fraction above 0 and at most 1")
    return value


def port(text: str) -> int:
    """A TCP port: 1 to 65535."""
    value = _integer(text)
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{text} is not a port number (1 to 65535)")
    return value
