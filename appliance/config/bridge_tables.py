"""The site bridge table (``[site_bridge]``): a site broker's link to the central broker.

Read by ``appliance provision broker-config`` (the broker unit's ``ExecStartPre``): with a
``name``, the rendered site broker carries a Mosquitto bridge to ``remote_host`` under that
bridge identity (``appliance.broker.bridge``, docs/deployment.md). Empty ``name``: a
stand-alone or central broker. Composed into ``Config`` by ``tables``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import Field, model_validator

from appliance.config.fields import Int, Refused, Str, Table, ordered

MIN_RESTART_S, MAX_RESTART_S = 1, 3600
MIN_KEEPALIVE_S, MAX_KEEPALIVE_S = 5, 3600
DEFAULT_PORT = 8883  # MQTT over TLS
DEFAULT_RESTART_BASE_S, DEFAULT_RESTART_CAP_S = 2, 30  # a WAN blip is retried at once, an outage gently
DEFAULT_KEEPALIVE_S = 30


def _target_named(table: Any) -> Any:
    if table.name and not table.remote_host:
        raise Refused("a bridge needs the central broker's remote_host", "remote_host")
    return table


@dataclass(frozen=True)
class BridgeConfig(Table):
    """This site broker's bridge to the central broker; see ``docs/deployment.md``."""

    name: Annotated[Str, Field(pattern=r"^([a-z0-9][a-z0-9-]{0,62})?$", description=(
        "the bridge identity ('appliance provision bridge NAME --devices ...' on the central PKI); "
        "empty: this broker has no bridge"))] = ""
    remote_host: Annotated[Str, Field(pattern=r"^[^\s:]*$", description=(
        "the central broker's host name or IPv4 address (its certificate must name it)"))] = ""
    remote_port: Annotated[Int, Field(ge=1, le=65535, description="the central broker's TLS port")] = DEFAULT_PORT
    restart_base_s: Annotated[Int, Field(ge=MIN_RESTART_S, le=MAX_RESTART_S, description=(
        "first wait before the bridge reconnects, seconds (doubled up to restart_cap_s, with jitter)"))] = \
        DEFAULT_RESTART_BASE_S
    restart_cap_s: Annotated[Int, Field(ge=MIN_RESTART_S, le=MAX_RESTART_S, description=(
        "longest wait between the bridge's reconnection attempts, seconds"))] = DEFAULT_RESTART_CAP_S
    keepalive_s: Annotated[Int, Field(ge=MIN_KEEPALIVE_S, le=MAX_KEEPALIVE_S, description=(
        "MQTT keep-alive of the bridge connection: a silent link is noticed within 1.5 x this, seconds"))] = \
        DEFAULT_KEEPALIVE_S

    _restart_ordered = ordered("restart_base_s", "restart_cap_s", "restart_base_s must not exceed restart_cap_s")
    _target = model_validator(mode="after")(_target_named)
