"""The messages of a remote wipe (``wipe`` / ``wipe-done``): a door being revoked destroys its cache.

A matcher identity orders one door wiped (``WipeOrder``) just before the door's certificate
is revoked; the door crypto-shreds its cache and outbox and answers ``WipeDone`` on its own
topic. Both travel sealed and signed like sync deltas (``security.envelope``, types WIPE and
WIPE_DONE): the door's opener knows only the matcher replicas as senders, and the envelope's
counter and time window refuse a replay. The order also names the door (``device_id``) and is
refused by any other door, so an order captured for one door means nothing at another. They
live here, not in the registry of ``messages``, so that only the two parties know them
(decoded with ``messages.decode(data, WipeOrder)``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, ClassVar

from pydantic import Field

from appliance.protocol.messages import Flag, Id, Message, Number, Text


@dataclass(frozen=True)
class WipeOrder(Message):
    """Matcher -> one device (its ``wipe`` topic): destroy the cache now, stop deciding, never
    start again under this identity."""

    TYPE: ClassVar[str] = "wipe_order"
    wipe_id: Id
    device_id: Text
    issued_at: Number
    requested_by: Annotated[Text, Field(min_length=1, description="the account that revoked the device")]


@dataclass(frozen=True)
class WipeDone(Message):
    """Device -> matcher (its ``wipe-done`` topic): the order ``wipe_id`` was carried out;
    ``key_destroyed``: the cache's store key is gone, so no copy of cache.db can be opened."""

    TYPE: ClassVar[str] = "wipe_done"
    wipe_id: Id
    device_id: Text
    at: Number
    key_destroyed: Flag
    files_removed: Annotated[list[Text], Field(max_length=16, description="file names deleted")]
