"""Signed model-pack updates: verify, install side by side, self-test, roll back (the
publisher's side is ``ops.publishing``).

A package is an uncompressed tar (model files do not compress) holding ``RELEASE.json`` (kind,
id, version, SHA-256 of every payload file), ``RELEASE.sig`` (Ed25519 over the release
document, by a publisher key the appliance trusts) and ``payload/...``. Nothing from a package
is used before the signature and every hash check out; links, devices and paths outside
``payload/`` are refused outright.

Installed versions live side by side (``<root>/<id>/<version>``); the active one is a
symlink ``<root>/active/<id>`` switched atomically, so the previous version stays on disk
and a rollback is one rename. A new version becomes active only provisionally: the start-up
self-test (load the model, run it on real faces) decides, and a failure switches back.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import shutil
import tarfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Callable

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from appliance import paths
from appliance.durable_file import SHARED, disk_errors, sync_folder, write_durably
from appliance.errors import ApplianceError, ErrorCode
from appliance.security import signing

if TYPE_CHECKING:
    from appliance.config import Config

log = logging.getLogger(__name__)

RELEASE = "RELEASE.json"
SIGNATURE = "RELEASE.sig"
PAYLOAD = "payload"
FORMAT = 1
MODEL_PACK = "model-pack"
KINDS = (MODEL_PACK, "app")  # the release format's kinds: "app" is verified, never installed (apply_update)
ACTIVE = "active"
STATE = "state.json"
PUBLIC_KEY_SUFFIX = ".pub"
RELEASE_DOMAIN = b"appliance/release/v1|"
PARTIAL_SUFFIX = ".partial"  # a version folder being written; removed after a failure, or by the next attempt
LOCK_FILE, LOCK_MODE = ".lock", 0o600  # held while a version is installed, switched or self-tested
MAX_MEMBER_BYTES = 2 * 1024 ** 3  # a model pack is tens of MB; refuse absurd members early


@dataclass(frozen=True)
class Release:
    kind: str
    id: str
    version: str
    files: dict[str, str] = field(default_factory=dict)  # payload path -> sha256
    created: float = 0.0
    format: int = FORMAT

    def document(self) -> bytes:
        """``RELEASE.json`` as packed, byte for byte what the signature covers after its domain."""
        return signing.canonical_json(asdict(self))

    @property
    def label(self) -> str:
        return f"{self.id}@{self.version}"


def _reject(why: str) -> ApplianceError:
    return ApplianceError(ErrorCode.UPDATE_REJECTED, why)


def _sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def load_publisher_keys(folder: Path) -> list[Ed25519PublicKey]:
    """Trusted publisher keys: one ``*.pub`` file (64 hex digits) each."""
    keys = []
    for path in sorted(Path(folder).glob(f"*{PUBLIC_KEY_SUFFIX}")) if Path(folder).is_dir() else []:
        keys.append(Ed25519PublicKey.from_public_bytes(bytes.fromhex(path.read_text().strip())))
    return keys


# -- verification -------------------------------------------------------------------------
def verify_package(package: Path, trusted: list[Ed25519PublicKey]) -> tuple[Release, dict[str, bytes]]:
    """The release and its payload files, or UPDATE_REJECTED saying what is wrong."""
    if not trusted:
        raise _reject("no trusted publisher key configured")
    try:
        tar = tarfile.open(package, "r:")
    except (OSError, tarfile.TarError) as exc:
        raise _reject(f"{package}: not a package ({exc})") from None
    members: dict[str, bytes] = {}
    with tar:
        for member in tar:
            name = PurePosixPath(member.name)
            if not member.isfile() or name.is_absolute() or ".." in name.parts or member.size > MAX_MEMBER_BYTES:
                raise _reject(f"{package}: member {member.name!r} is not a plain file inside the package")
            if member.name in members:
                raise _reject(f"{package}: member {member.name!r} appears twice")
            members[member.name] = tar.extractfile(member).read()
    if RELEASE not in members or SIGNATURE not in members:
        raise _reject(f"{package}: unsigned (no {RELEASE} / {SIGNATURE})")
    document = members.pop(RELEASE)
    try:
        signature = bytes.fromhex(members.pop(SIGNATURE).decode("ascii").strip())
    except ValueError:
        raise _reject(f"{package}: signature malformed") from None
    if not any(signing.verify(key, RELEASE_DOMAIN, document, signature) for key in trusted):
        raise _reject(f"{package}: signature invalid or by an untrusted publisher")
    try:
        release = Release(**json.loads(document))
    except (ValueError, TypeError) as exc:
        raise _reject(f"{package}: release document invalid ({exc})") from None
    payload = {name[len(PAYLOAD) + 1:]: data for name, data in members.items() if name.startswith(PAYLOAD + "/")}
    if set(members) - {f"{PAYLOAD}/{n}" for n in payload}:
        raise _reject(f"{package}: members outside {PAYLOAD}/")
    if set(payload) != set(release.files):
        raise _reject(f"{package}: files differ from the signed list")
    for name, data in payload.items():
        if _sha256_bytes(data) != release.files[name]:
            raise _reject(f"{package}: {name} differs from its signed hash")
    if release.kind not in KINDS or not release.id or not release.version or "/" in release.id + release.version:
        raise _reject(f"{package}: kind/id/version invalid")
    return release, payload


# -- side-by-side installation and activation ---------------------------------------------
@dataclass
class SlotState:
    active: str | None = None
    previous: str | None = None
    failed: list[str] = field(default_factory=list)
    trial: bool = False  # active, but its self-test has not passed yet (an update cut short leaves this)


class Slots:
    """Versions of one pack (or the application) under ``root/<id>``; ``root/active/<id>``
    points at the active one."""

    def __init__(self, root: Path, pack_id: str):
        self.root = Path(root)
        self.id = pack_id
        self.folder = self.root / pack_id
        self.link = self.root / ACTIVE / pack_id

    def version_dir(self, version: str) -> Path:
        return self.folder / version

    def state(self) -> SlotState:
        """What ``state.json`` says; a damaged one (a power cut under a release that wrote it
        without fsync leaves it empty) is rebuilt from the link, on trial: tested again."""
        path = self.folder / STATE
        if not path.exists():
            return SlotState()
        try:
            return SlotState(**json.loads(path.read_text(encoding="utf-8")))
        except (ValueError, TypeError):
            pointed = self.pointed()
            log.warning("%s: %s is damaged; taking the active link (%s) for the state, to be self-tested",
                        self.id, path, pointed or "none")
            return SlotState(active=pointed, trial=pointed is not None)

    def _save(self, state: SlotState) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        write_durably(self.folder / STATE, json.dumps(asdict(state), indent=2).encode("utf-8"), SHARED)

    def install(self, release: Release, payload: dict[str, bytes]) -> Path:
        """Write the version's files beside the others: every file synced before the folder
        takes its name, so after a power cut a version folder is complete or absent. A disk
        that cannot take it is ``STORE_UNWRITABLE``, and nothing of it stays to take room."""
        target = self.version_dir(release.version)
        if target.exists():
            raise _reject(f"{release.label} is installed already")
        staging = self.folder / f".{release.version}{PARTIAL_SUFFIX}"
        shutil.rmtree(staging, ignore_errors=True)
        try:
            with disk_errors(release.label):
                for name, data in payload.items():
                    path = staging / name
                    path.parent.mkdir(parents=True, exist_ok=True)
                    write_durably(path, data, SHARED)
                os.replace(staging, target)  # a version folder exists only complete
                sync_folder(self.folder)
        finally:
            shutil.rmtree(staging, ignore_errors=True)  # after a failure: the disk needs the room back
        return target

    @contextmanager
    def locked(self) -> Iterator[Slots]:
        """Exclusive use of this pack's versions, state and link (``fcntl.flock``, released when
        the holder exits, however it ends): an update and a service finishing an interrupted one
        at its start never self-test, confirm or roll back the same version at once."""
        self.folder.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(self.folder / LOCK_FILE, os.O_RDWR | os.O_CREAT, LOCK_MODE)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX)
            yield self
        finally:
            os.close(descriptor)

    def pointed(self) -> str | None:
        """The version the active link names (what a model load finds), or None."""
        try:
            return Path(os.readlink(self.link)).name
        except OSError:
            return None

    def _point(self, version: str | None) -> None:
        self.link.parent.mkdir(parents=True, exist_ok=True)
        if version is None:
            self.link.unlink(missing_ok=True)
        else:
            tmp = self.link.with_name(f".{self.id}.link.tmp")
            tmp.unlink(missing_ok=True)
            os.symlink(os.path.relpath(self.version_dir(version), self.link.parent), tmp)
            os.replace(tmp, self.link)  # rename over the old link: never a moment without one
        sync_folder(self.link.parent)

    def activate(self, version: str) -> SlotState:
        """Make ``version`` active on trial. The state is written before the link: it is the
        intent, and ``settle`` makes the link follow it after a cut between the two."""
        state = self.state()
        if state.active != version:
            state = SlotState(active=version, previous=state.active, failed=state.failed, trial=True)
        self._save(state)
        self._point(version)
        return state

    def confirm(self) -> SlotState:
        """The active version passed its self-test: no longer on trial."""
        state = replace(self.state(), trial=False)
        self._save(state)
        return state

    def rollback(self, reason: str) -> SlotState:
        """Mark the active version failed and switch back to the previous one."""
        state = self.state()
        failed = [*state.failed, state.active] if state.active else state.failed
        restored = SlotState(active=state.previous, previous=None, failed=failed)
        self._save(restored)
        self._point(restored.active)
        return restored

    def settle(self) -> bool:
        """Point the link where the state says (it differs only after a cut between the two
        writes); whether the active version still needs its self-test."""
        state = self.state()
        if self.pointed() != state.active:
            self._point(state.active)
        return state.trial


SelfTest = Callable[[Path, str], None]  # (models root, pack id) -> raises on failure


def apply_update(package: Path, root: Path, trusted: list[Ed25519PublicKey], selftest: SelfTest) -> Release:
    """Verify, install beside the current version, activate, self-test; roll back on failure."""
    release, payload = verify_package(package, trusted)
    if release.kind != MODEL_PACK:  # the application itself is a .deb (scripts/build-deb.sh), updated by apt
        raise _reject(f"{release.label}: a {release.kind!r} package is not installed here; the application "
                      "ships as a .deb package (docs/operations.md)")
    _check_pack_manifest(release, payload)
    with Slots(root, release.id).locked() as slots:
        slots.install(release, payload)
        slots.activate(release.version)
        run_selftest(slots, selftest)
    return release


def run_selftest(slots: Slots, selftest: SelfTest) -> None:
    """The self-test of the active version: passed, it is confirmed; failed, the previous
    version becomes active again."""
    slots.settle()
    state = slots.state()
    if state.active is None:
        return
    try:
        selftest(slots.root, slots.id)
    except Exception as exc:  # noqa: BLE001 - any failure of the new version means roll back
        restored = slots.rollback(str(exc))
        back = restored.active or "no version"
        raise ApplianceError(ErrorCode.SELFTEST_FAILED,
                             f"{slots.id}@{state.active}: {exc}; active again: {back}") from None
    if state.trial:
        slots.confirm()


def updates_root(config: Config) -> Path:
    """Where signed packs are installed side by side (``[ops] models_root``)."""
    return Path(config.ops.models_root) if config.ops.models_root else paths.data_dir() / "packs"


def on_trial(root: Path) -> list[str]:
    """The packs under ``root`` whose active version has not passed its self-test, or whose
    link and state disagree (an update cut short), as ``id@version``; nothing is changed."""
    found = []
    for slots in installed(root):
        state = slots.state()
        if state.trial or slots.pointed() != state.active:
            found.append(f"{slots.id}@{state.active or 'none'}")
    return found


def active_version(root: Path, pack_id: str) -> str | None:
    """The version an update made active for ``pack_id`` under ``root``; None when no update
    installed that pack (its version is then the one on the search path)."""
    slots = Slots(root, pack_id)
    return slots.state().active if (slots.folder / STATE).is_file() else None


def installed(root: Path) -> list[Slots]:
    """Every pack an update installed under ``root`` (it has a state)."""
    root = Path(root)
    folders = sorted(p for p in root.iterdir() if p.is_dir() and p.name != ACTIVE) if root.is_dir() else []
    return [Slots(root, folder.name) for folder in folders if (folder / STATE).is_file()]


def _check_pack_manifest(release: Release, payload: dict[str, bytes]) -> None:
    """The signed pack must describe itself consistently (id and version in manifest.toml)."""
    import sys

    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        import tomli as tomllib
    try:
        pack = tomllib.loads(payload["manifest.toml"].decode("utf-8"))["pack"]
    except (KeyError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise _reject(f"{release.label}: manifest.toml missing or invalid ({exc})") from None
    if (pack.get("id"), pack.get("version")) != (release.id, release.version):
        raise _reject(f"{release.label}: manifest.toml says {pack.get('id')}@{pack.get('version')}")
