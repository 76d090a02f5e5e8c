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
from collections.abc import Callable
from typing import TypeVar

Number = TypeVar("Number", int, float)


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


def _bounded(name: str, parse: Callable[[str], Number], allowed: Callable[[Number], bool],
             range_words: str) -> Callable[[str], Number]:
    """A ``type=`` callable: ``parse`` the text, refuse a value ``allowed`` rejects as not ``range_words``."""
    def kind(text: str) -> Number:
        value = parse(text)
        if not allowed(value):
            raise argparse.ArgumentTypeError(f"{text} is not {range_words}")
        return value

    kind.__name__ = kind.__qualname__ = name  # argparse and test ids name the type by it
    return kind


# a count, a size
positive_int = _bounded("positive_int", _integer, lambda v: v >= 1, "a positive whole number (1 or more)")
# a seed, a number of warm-up frames
non_negative_int = _bounded("non_negative_int", _integer, lambda v: v >= 0, "a whole number of 0 or more")
# a rate per second, a length of time
positive_float = _bounded("positive_float", _number, lambda v: v > 0, "a number above 0")
# a pause, a time-out where 0 means none
non_negative_float = _bounded("non_negative_float", _number, lambda v: v >= 0, "a number of 0 or more")
# a target error rate (FMR, FAR, APCER, BPCER)
rate = _bounded("rate", _number, lambda v: 0 < v < 1, "a rate strictly between 0 and 1 (e.g. 0.001)")
# a rate that may be 0 (a floor that rejects none of the calibration set)
rate_or_zero = _bounded("rate_or_zero", _number, lambda v: 0 <= v < 1, "a rate of 0 or more and below 1")
# a share of a whole
fraction = _bounded("fraction", _number, lambda v: 0 < v <= 1, "a fraction above 0 and at most 1")
port = _bounded("port", _integer, lambda v: 1 <= v <= 65535, "a port number (1 to 65535)")
