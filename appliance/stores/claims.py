"""Keyed card claims: what a device cache holds for a card, never the card number.

Card numbers are a small space (a site's cards run through a few million numbers at most),
so an unkeyed hash in a stolen cache would let anyone test them all in seconds. A claim is
HMAC-SHA256 under a per-site claim key: the matcher keeps it in its key vault
(``site_claim_key``, wrapped like the per-subject data keys) and hands it to each door only
inside sync answers sealed to that door (``Delta.claim_key``); the door keeps it among its own
keys (``CLAIM_KEY`` in its key provider), not in the cache file, and a wipe destroys it.
"""
from __future__ import annotations

import hashlib
import hmac

from appliance.security.keys import KEY_BYTES, KeyProvider, SecretKey

CLAIM_KEY = "claim-key"  # the door's copy, in its key provider beside the cache key
# the vault slot of the site's key: '#' is no character of a subject id, so no person takes it
SITE_CLAIM_SLOT = "#site-claim-key"
CLAIM_DOMAIN = b"appliance/claim/v2|"


def claim_hash(claim: str, key: bytes) -> str:
    """HMAC-SHA256 (hex) of a card number under the site's claim key; "" for no card."""
    if not claim:
        return ""
    if len(key) != KEY_BYTES:
        raise ValueError(f"a claim key is {KEY_BYTES} bytes")
    return hmac.new(key, CLAIM_DOMAIN + claim.encode("utf-8"), hashlib.sha256).hexdigest()


def site_claim_key(vault) -> bytes:
    """The site's claim key from the matcher's ``KeyVault``, made on first use."""
    if vault.has_key(SITE_CLAIM_SLOT):
        return vault.data_key(SITE_CLAIM_SLOT)
    try:
        return vault.data_key(SITE_CLAIM_SLOT, create=True)
    except Exception:  # another replica made it between the look and the insert: read theirs
        return vault.data_key(SITE_CLAIM_SLOT)


def rotate_site_claim_key(vault, biometric) -> str:
    """Replace the site's claim key (after a stolen door: claims keyed by the new one cannot be
    tested against card numbers with the stolen key); the new key's fingerprint. One empty
    revision of ``biometric`` tells every door now: the replicas announce the new head, each
    door asks, its answer carries the new key (replicas read it afresh for every answer), and
    the door empties its cache and syncs it again from revision 0 (``DeviceCache.adopt_claim_key``)."""
    vault.destroy(SITE_CLAIM_SLOT)
    fingerprint = SecretKey(CLAIM_KEY, site_claim_key(vault)).fingerprint
    biometric.advance_revision(biometric.revision + 1)
    return fingerprint


def held_claim_key(keys: KeyProvider | None) -> bytes | None:
    """The door's copy of the site's claim key; None before a sync answer brought it."""
    if keys is None or not keys.exists(CLAIM_KEY):
        return None
    return keys.get(CLAIM_KEY).material


def replace_claim_key(keys: KeyProvider, material: bytes) -> bool:
    """Keep ``material`` as the door's claim key; False when it is the one already held."""
    if held_claim_key(keys) == material:
        return False
    keys.destroy(CLAIM_KEY)
    keys.put(SecretKey(CLAIM_KEY, material))
    return True
