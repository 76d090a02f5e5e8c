"""The kiosk screen's table (``[kiosk]``): the page the edge daemon serves on this device's own
loopback interface, shown full screen by Chromium (``docs/kiosk.md``). Composed into ``Config``
by ``tables``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from pydantic import AfterValidator, Field

from appliance.config.fields import Bool, Float, Int, Refused, Str, Table

KIOSK_PORT = 8765  # an unprivileged port on 127.0.0.1 (the edge service runs without CAP_NET_BIND_SERVICE)
UNPRIVILEGED_PORTS = (1024, 65535)
MAX_PREVIEW_FPS = 15.0  # a preview is for the person to place themselves, not video: keep the CPU for the pass
PREVIEW_WIDTHS = (160, 1280)  # pixels: a thumbnail at least, never more than a 720p frame's width
KIOSK_LANGUAGES = ("zh_CN", "en")  # the door catalogs (appliance.i18n.LANGUAGES)


def kiosk_language(tag: str) -> str:
    """``zh-CN``/``zh``/``zh_Hans`` -> ``zh_CN`` (the catalogs' spelling); refused when there is no catalog."""
    from appliance.i18n import normalise_language

    try:
        return normalise_language(tag)
    except ValueError as exc:
        raise Refused(str(exc)) from None


@dataclass(frozen=True)
class KioskConfig(Table):
    """The door's screen: on or off, its loopback port, its language and the camera preview."""

    enabled: Annotated[Bool, Field(description=(
        "serve the kiosk page (screen state, guidance, results, notice, camera preview) on 127.0.0.1; "
        "off: a headless door, its screens only logged"))] = False
    port: Annotated[Int, Field(ge=UNPRIVILEGED_PORTS[0], le=UNPRIVILEGED_PORTS[1], description=(
        "TCP port of the kiosk page on 127.0.0.1 only (never another address)"))] = KIOSK_PORT
    language: Annotated[Str, AfterValidator(kiosk_language), Field(description=(
        "language of the screen: zh_CN or en (zh-CN, zh and zh_Hans are read as zh_CN)"))] = "zh_CN"
    preview_fps: Annotated[Float, Field(ge=0.0, le=MAX_PREVIEW_FPS, description=(
        f"camera preview frames per second on the screen (0: no preview; at most {MAX_PREVIEW_FPS:g}); "
        "frames are kept in memory only, never written"))] = 5.0
    preview_width: Annotated[Int, Field(ge=PREVIEW_WIDTHS[0], le=PREVIEW_WIDTHS[1], description=(
        "width of the preview frames in pixels (downscaled from the camera's)"))] = 480
