"""After a real enroll/verify run (real models, real face images) nothing in the data
directory or in any store holds image bytes, an unmasked name outside the identity registry,
or the similarity score."""
from __future__ import annotations

import struct
import time

import numpy as np

from appliance.capture.images import read_image
from appliance.config import SecurityConfig
from appliance.security.consent import ENROLL_SCOPE, AgeBand, Alternative, ConsentRecord, Person, new_subject_id
from appliance.security.envelope import MessageType, NodeKeys, Sealer
from appliance.security.roles import Role
from appliance.stores.device import Outbox
from appliance.stores.protected import IDENTITY_FILE, ProtectedData
from appliance.vision.templates import similarity

NAMES = ("张三", "Zhang San")
IMAGE_MAGIC = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"GIF8", b"BM6", b"RIFF")
PIXEL_WINDOW = 48
WINDOWS_PER_IMAGE = 6
SCORE_DECIMALS = range(2, 9)


def pixel_windows(image: np.ndarray, rng: np.random.Generator) -> list[bytes]:
    flat = np.ascontiguousarray(image).tobytes()
    starts = rng.integers(0, len(flat) - PIXEL_WINDOW, WINDOWS_PER_IMAGE)
    return [flat[s:s + PIXEL_WINDOW] for s in starts]


def score_forms(score: float) -> tuple[list[str], list[bytes]]:
    texts = [repr(score)] + [f"{score:.{d}f}" for d in SCORE_DECIMALS]
    return texts, [struct.pack("<f", score), struct.pack("<d", score), struct.pack(">d", score)]


def store_values(store, skip_tables: tuple[str, ...] = ()) -> list[object]:
    tables = [r[0] for r in store.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
    values: list[object] = []
    for table in tables:
        if table not in skip_tables:
            for row in store.execute(f'SELECT * FROM "{table}"'):
                values.extend(row)
    return values


def test_enroll_verify_leaves_no_image_name_or_score(tmp_path, keys, principals, pipeline, faces):
    person_dir = sorted((faces / "celeba-dev").iterdir())[0]
    image_files = sorted(person_dir.glob("*.jpg"))[:2]
    images = [read_image(p) for p in image_files]
    enrolled, probe = (pipeline.template(image)[1] for image in images)
    assert enrolled is not None and probe is not None
    score = similarity(enrolled, probe)

    root = tmp_path / "node"
    operator = principals[Role.OPERATOR]
    with ProtectedData(root, keys, SecurityConfig()) as data:
        subjects = []
        for name in NAMES:
            subject = new_subject_id()
            data.register_person(operator, Person(subject, name, AgeBand.ADULT, Alternative.CARD))
            data.record_consent(operator, ConsentRecord(subject, ENROLL_SCOPE, "v3", time.time(), name))
            data.enroll(operator, subject, enrolled, np.array([0.9, 0.7], np.float32))
            subjects.append(subject)
        assert data.verify(operator, subjects[0], probe, threshold=0.3) is True
        assert data.verify(operator, subjects[1], probe, threshold=0.99) is False
        data.people(operator)
        data.audit.export(principals[Role.AUDITOR])
        data.delete_subject(principals[Role.SECURITY_ADMIN], subjects[1])
        # a device-side outbox with a sealed decision event, as the edge daemon keeps it
        with Outbox.open(root / "outbox.db", keys) as outbox:
            sealed = Sealer(NodeKeys.generate("door-a")).seal(
                data.node.public(), MessageType.EVENT, b'{"subject": "%s", "result": "pass"}' % subjects[0].encode())
            outbox.enqueue("access", sealed)

        rng = np.random.default_rng(0)
        windows = [w for image in images for w in pixel_windows(image, rng)]
        # the encoded files too (a JPEG copied into a blob has no decoded pixels in it)
        windows += [w for f in image_files for w in pixel_windows(np.frombuffer(f.read_bytes()[64:], np.uint8), rng)]
        score_texts, score_bytes = score_forms(score)

        def check_bytes(blob: bytes, where: str) -> None:
            assert not any(m in blob for m in IMAGE_MAGIC if len(m) > 3) and not blob.startswith(IMAGE_MAGIC), where
            assert not any(w in blob for w in windows), f"image pixels in {where}"
            assert not any(s in blob for s in score_bytes), f"similarity score bytes in {where}"

        def check_text(text: str, where: str) -> None:
            assert not any(name in text for name in NAMES), f"unmasked name in {where}"
            assert not any(s in text for s in score_texts), f"similarity score in {where}"

        # 1. every file under the data directory, as raw bytes (stores are encrypted on disk)
        files = [p for p in root.rglob("*") if p.is_file()]
        assert any(p.suffix == ".json" for p in files)  # the deletion receipt is there to be scanned
        for path in files:
            raw = path.read_bytes()
            check_bytes(raw, str(path))
            check_text(raw.decode("utf-8", "replace"), str(path))

        # 2. every value of every table once decrypted; names may live only in the registry's persons
        stores = {**data.stores, "outbox.db": Outbox.open(root / "outbox.db", keys)}
        for name, store in stores.items():
            skip = ("persons", "consents") if name == IDENTITY_FILE else ()
            for value in store_values(store, skip):
                if isinstance(value, bytes):
                    check_bytes(value, name)
                elif isinstance(value, str):
                    check_text(value, name)
                elif isinstance(value, float):
                    assert value != score and abs(value - score) > 1e-6, f"similarity value in {name}"
        stores["outbox.db"].close()
