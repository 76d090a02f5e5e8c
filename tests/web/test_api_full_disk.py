"""The API on a full data disk (a real tmpfs under the data folder, filled to the last byte):
an enrollment is refused with 503 and E213, saying why, and leaves nothing half done; reading
goes on; once there is room the same enrollment goes through."""
from __future__ import annotations

import time
from pathlib import Path

import pytest

from apikit import api_config, bearer, running, tokens_for
from appliance.security.roles import Role
from diskkit import fill, small_disk

DISK_BYTES = 48 * 1024 * 1024
NAME = "Ouyang Mingzhu"
CONSENT = {"consent_ref": "form-2026-0099"}
PERSON = "id07206"
RECOVERY_S = 10.0


def photos(faces: Path, identity: str) -> list[tuple[str, tuple[str, bytes, str]]]:
    files = sorted((faces / "celeba-dev" / identity).glob("*.jpg"))[:3]
    return [("images", (f.name, f.read_bytes(), "image/jpeg")) for f in files]


@pytest.fixture
def full(tmp_path):
    with small_disk(tmp_path / "data", DISK_BYTES) as root:
        config = api_config()
        tokens = tokens_for(root, config)
        with running(root, config) as client:
            yield root, client, tokens


def people_named(client, tokens, surname: str) -> list[dict]:
    found = client.post("/api/people/search", json={"q": surname}, headers=bearer(tokens[Role.OPERATOR]))
    assert found.status_code == 200, found.text
    return found.json()["items"]


def test_an_enrollment_on_a_full_disk_is_a_503_that_says_why_and_leaves_nothing_half_done(full, faces):
    root, client, tokens = full
    operator = bearer(tokens[Role.OPERATOR])
    assert people_named(client, tokens, "Ouyang") == []
    filler = fill(root)
    refused = client.post("/api/people", data={"name": NAME, **CONSENT}, files=photos(faces, PERSON), headers=operator)
    assert refused.status_code == 503, refused.text
    error = refused.json()["error"]
    assert (error["code"], error["name"]) == (213, "STORE_UNWRITABLE") and "full" in error["detail"], error
    assert refused.headers.get("Retry-After"), refused.headers  # try again once there is room

    filler.unlink()  # room made
    assert people_named(client, tokens, "Ouyang") == []  # nothing half done
    # the first try after the audit writer's pause (0.5 s) goes through: not only at its next idle tick
    deadline = time.monotonic() + RECOVERY_S
    while True:
        enrolled = client.post("/api/people", data={"name": NAME, **CONSENT}, files=photos(faces, PERSON),
                               headers=operator)
        if enrolled.status_code != 503 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert enrolled.status_code == 201, enrolled.text
    assert len(people_named(client, tokens, "Ouyang")) == 1
