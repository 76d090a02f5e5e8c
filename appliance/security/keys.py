"""Raw 256-bit keys from a provider: root-only files in production, environment in tests.

Raw keys, not passphrases: SQLCipher derives a passphrase with PBKDF2 (~80 ms per open),
while a raw key opens in well under a millisecond, and a random 256-bit key needs no
stretching. Keys are wrapped in :class:`SecretKey` so that printing or logging one shows a
name and a short fingerprint, never the bytes.
"""
from __future__ import annotations

import hashlib
import os
import secrets
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from appliance.durable_file import sync_folder, write_durably
from appliance.errors import ApplianceError, ErrorCode

KEY_BYTES = 32
FINGERPRINT_HEX = 12
KEY_FILE_SUFFIX = ".key"
STAGED_SUFFIX = ".key.new"
ENV_PREFIX = "APPLIANCE_KEY_"
KEY_FILE_MODE = 0o600
KEY_DIR_MODE = 0o700
# permission bits that make a key file readable or writable by anyone but its owner
_OTHERS_BITS = stat.S_IRWXG | stat.S_IRWXO

# Names of the keys the appliance uses; one key per store so that a leak of one store's key
# does not open the others (the identity registry in particular is kept apart from templates).
BIOMETRIC_DB = "biometric-db"
IDENTITY_DB = "identity-db"
KEYVAULT_DB = "keyvault-db"
AUDIT_DB = "audit-db"
CACHE_DB = "cache-db"
OUTBOX_DB = "outbox-db"
SYNC_DB = "sync-db"  # the matcher's sync state: device revisions, deletion confirmations, event ids
TEMPLATE_WRAP = "template-wrap"  # wraps the per-subject data keys (crypto-shredding)
NODE_SIGNING = "node-signing"  # Ed25519 seed: audit checkpoints, receipts, envelopes, decisions
NODE_AGREEMENT = "node-agreement"  # X25519 private key: envelopes sealed to this node
ALL_KEYS = (BIOMETRIC_DB, IDENTITY_DB, KEYVAULT_DB, AUDIT_DB, CACHE_DB, OUTBOX_DB, SYNC_DB,
            TEMPLATE_WRAP, NODE_SIGNING, NODE_AGREEMENT)
# The SM suite's (``[security] crypto_suite = "sm"``; ``appliance.security.sm``): a node gets
# them beside its default keys when it selects the suite, never otherwise.
NODE_SM2_SIGNING = "node-sm2-signing"  # SM2 private key: envelopes sealed with the SM suite
NODE_SM2_AGREEMENT = "node-sm2-agreement"  # SM2 private key: message keys SM2-encrypted to this node
SM2_KEYS = (NODE_SM2_SIGNING, NODE_SM2_AGREEMENT)


@dataclass(frozen=True)
class SecretKey:
    """A named raw key whose repr never shows the key bytes."""

    name: str
    material: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if len(self.material) != KEY_BYTES:
            raise ApplianceError(ErrorCode.KEY_INVALID, f"key {self.name!r}: expected {KEY_BYTES} bytes")

    @property
    def fingerprint(self) -> str:
        """Short one-way identifier, safe to log (SHA-256 of a domain tag and the key)."""
        return hashlib.sha256(b"appliance-key-fp|" + self.material).hexdigest()[:FINGERPRINT_HEX]

    def __repr__(self) -> str:
        return f"SecretKey(name={self.name!r}, fingerprint={self.fingerprint})"

    __str__ = __repr__

    def sqlcipher_pragma_value(self) -> str:
        """The ``x'..'`` literal that makes SQLCipher use the key raw (no PBKDF2)."""
        return f"\"x'{self.material.hex()}'\""


def generate_key(name: str) -> SecretKey:
    return SecretKey(name, secrets.token_bytes(KEY_BYTES))


class KeyProvider(Protocol):
    """Where keys come from. A TPM- or keyring-backed provider implements the same calls."""

    def get(self, name: str) -> SecretKey: ...

    def exists(self, name: str) -> bool: ...

    def put(self, key: SecretKey) -> None:
        """Store a new key; refuses to overwrite (rotation goes through stage/commit)."""

    def stage(self, key: SecretKey) -> None:
        """Keep a replacement key beside the current one until :meth:`commit` (crash-safe rekey)."""

    def staged(self, name: str) -> SecretKey | None: ...

    def commit(self, name: str) -> None: ...

    def destroy(self, name: str) -> None:
        """Destroy a key and its staged replacement for good (crypto-shredding); idempotent."""


def _parse(name: str, text: str) -> SecretKey:
    try:
        material = bytes.fromhex(text.strip())
    except ValueError:
        raise ApplianceError(ErrorCode.KEY_INVALID, f"key {name!r} is not hexadecimal") from None
    return SecretKey(name, material)


class FileKeyProvider:
    """One hex file per key, mode 0600 in a 0700 folder, owned by the running user.

    A key file that group or others could read is refused (as ssh does), because a key that
    has been readable by others must be treated as leaked and rotated.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)

    def _path(self, name: str, suffix: str = KEY_FILE_SUFFIX) -> Path:
        if not name or "/" in name or name.startswith("."):
            raise ApplianceError(ErrorCode.KEY_INVALID, f"bad key name {name!r}")
        return self.directory / f"{name}{suffix}"

    def exists(self, name: str) -> bool:
        return self._path(name).exists()

    def _read(self, name: str, path: Path) -> SecretKey:
        try:
            info = path.stat()
        except FileNotFoundError:
            raise ApplianceError(
                ErrorCode.KEY_MISSING, f"{path} (run 'appliance keys init' to create the keys)"
            ) from None
        if info.st_mode & _OTHERS_BITS or info.st_uid != os.geteuid():
            raise ApplianceError(
                ErrorCode.KEY_INSECURE, f"{path}: must be mode 0600 and owned by uid {os.geteuid()}; rotate it"
            )
        return _parse(name, path.read_text(encoding="ascii"))

    def get(self, name: str) -> SecretKey:
        return self._read(name, self._path(name))

    def _write_new(self, path: Path, key: SecretKey) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        os.chmod(self.directory, KEY_DIR_MODE)
        write_durably(path, key.material.hex().encode("ascii") + b"\n", KEY_FILE_MODE)

    def put(self, key: SecretKey) -> None:
        path = self._path(key.name)
        if path.exists():
            raise ApplianceError(ErrorCode.KEY_INVALID, f"{path} exists; rotate instead of overwriting")
        self._write_new(path, key)

    def stage(self, key: SecretKey) -> None:
        self._write_new(self._path(key.name, STAGED_SUFFIX), key)

    def staged(self, name: str) -> SecretKey | None:
        path = self._path(name, STAGED_SUFFIX)
        return self._read(name, path) if path.exists() else None

    def commit(self, name: str) -> None:
        os.replace(self._path(name, STAGED_SUFFIX), self._path(name))
        sync_folder(self.directory)

    def destroy(self, name: str) -> None:
        """Overwrite the key file (and a staged one) with random bytes, sync, unlink: the
        bytes are gone from the file system's view even where the medium keeps old blocks
        (flash wear levelling), and what such a block holds is only ever this key."""
        for path in (self._path(name), self._path(name, STAGED_SUFFIX)):
            try:
                fd = os.open(path, os.O_WRONLY)
            except FileNotFoundError:
                continue
            try:
                os.write(fd, secrets.token_bytes(max(os.fstat(fd).st_size, KEY_BYTES * 2 + 1)))
                os.fsync(fd)
            finally:
                os.close(fd)
            path.unlink()
        if self.directory.exists():
            sync_folder(self.directory)


class EnvKeyProvider:
    """Keys from ``APPLIANCE_KEY_<NAME>`` variables (hex). For tests and CI only: the
    environment of a process is visible to its owner and to root."""

    def __init__(self, environ: dict[str, str] | None = None) -> None:
        self.environ = os.environ if environ is None else environ

    @staticmethod
    def variable(name: str, staged: bool = False) -> str:
        return ENV_PREFIX + name.upper().replace("-", "_") + ("_NEW" if staged else "")

    def exists(self, name: str) -> bool:
        return self.variable(name) in self.environ

    def get(self, name: str) -> SecretKey:
        try:
            return _parse(name, self.environ[self.variable(name)])
        except KeyError:
            raise ApplianceError(ErrorCode.KEY_MISSING, f"environment variable {self.variable(name)}") from None

    def put(self, key: SecretKey) -> None:
        if self.exists(key.name):
            raise ApplianceError(ErrorCode.KEY_INVALID, f"{self.variable(key.name)} is set; rotate instead")
        self.environ[self.variable(key.name)] = key.material.hex()

    def stage(self, key: SecretKey) -> None:
        self.environ[self.variable(key.name, staged=True)] = key.material.hex()

    def staged(self, name: str) -> SecretKey | None:
        value = self.environ.get(self.variable(name, staged=True))
        return None if value is None else _parse(name, value)

    def commit(self, name: str) -> None:
        self.environ[self.variable(name)] = self.environ.pop(self.variable(name, staged=True))

    def destroy(self, name: str) -> None:
        self.environ.pop(self.variable(name), None)
        self.environ.pop(self.variable(name, staged=True), None)


def ensure_keys(provider: KeyProvider, names: tuple[str, ...] = ALL_KEYS) -> list[str]:
    """Create every missing key; returns the names created (never the keys)."""
    created = []
    for name in names:
        if not provider.exists(name):
            provider.put(generate_key(name))
            created.append(name)
    return created
