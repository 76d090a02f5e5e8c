"""The building blocks of the configuration tables: strict scalars, the table base that
refuses unknown keys, ``Refused`` and the small rules several tables share.

Split from ``tables`` so each table module stays small; nothing here knows a section.
"""
from __future__ import annotations

import re
from typing import Annotated, Any, ClassVar

from pydantic import AfterValidator, ConfigDict, Field, Strict, model_validator

# Strict scalars: a TOML value of another type is refused, never converted.
Int = Annotated[int, Strict()]
Float = Annotated[float, Strict()]  # an integer is accepted and stored as a float
Bool = Annotated[bool, Strict()]
Str = Annotated[str, Strict()]


class Table:
    """A table of the file: it refuses keys it does not know (the message lists the ones it does)."""

    __pydantic_config__: ClassVar[ConfigDict] = ConfigDict(extra="forbid")


class Refused(ValueError):
    """A refusal by one of this module's rules; ``key`` names the key inside the checked table
    (a rule joining two keys is checked on the table)."""

    def __init__(self, why: str, key: str = ""):
        super().__init__(why)
        self.key = key


IDENTITY_RULE = "letters, digits, '.', '_' and '-', at most 64, starting with a letter or digit"
IDENTITY_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
SERVICES = ("edge", "matcher")


def is_identity(name: str) -> bool:
    return bool(IDENTITY_PATTERN.fullmatch(name))


def ordered(low: str, high: str, why: str) -> Any:
    """The rule ``low <= high`` between two keys of a table, refused under the name of ``low``."""
    def check(table: Any) -> Any:
        if getattr(table, low) > getattr(table, high):
            raise Refused(why, low)
        return table
    return model_validator(mode="after")(check)


def identity_required(name: str) -> str:
    if not is_identity(name):
        raise Refused(f"{name!r} is not a valid identity ({IDENTITY_RULE})")
    return name


def identity_or_empty(name: str) -> str:
    return identity_required(name) if name else name


def lowercase(value: Any) -> Any:
    return value.lower() if isinstance(value, str) else value


def not_blank(source: str) -> str:
    if not source.strip():
        raise Refused("empty: give picamera2, a camera index, a URL, a video file or an image folder")
    return source


# an MQTT identity (a certificate's CN), or empty: not set
Identity = Annotated[Str, AfterValidator(identity_or_empty),
                     Field(json_schema_extra={"pattern": f"^({IDENTITY_PATTERN.pattern})?$"})]
# a fraction of something: 0..1
Fraction = Annotated[Float, Field(ge=0.0, le=1.0)]
Degrees = Annotated[Float, Field(ge=0.0, le=180.0)]
Grey = Annotated[Float, Field(ge=0.0, le=255.0)]  # an 8-bit grey level


