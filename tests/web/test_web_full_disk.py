"""The API and the console on a full data disk (a real tmpfs under the data folder, filled to
the last byte): an enrollment is refused with 503 and E213, saying why, and leaves nothing half
done; reading goes on; once there is room the same enrollment goes through. In the browser the
operator sees the problem above the form, the form still filled in (screenshot
``reports/console/enroll-full-disk.png``)."""
from __future__ import annotations

import time
from pathlib import Path

import pytest

from apikit import api_config, bearer, provision_devices, running, tokens_for
from appliance.security.roles import Role
from appliance.web.app import create_app
from authkit import login_session
from browserkit import log_in, shot
from diskkit import fill, small_disk

DISK_BYTES = 48 * 1024 * 1024
NAME = "Ouyang Mingzhu"
CONSENT = {"consent_ref": "form-2026-0099"}
PERSON = "id07206"
RECOVERY_S = 10.0
PAGE_TIMEOUT_MS = 60_000  # the first enrollment loads the face models in the console


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


def test_the_console_says_the_disk_is_full_above_the_filled_in_form_then_enrolls(tmp_path, faces, console_kit):
    with small_disk(tmp_path / "data", DISK_BYTES) as root:
        config = api_config()
        pki = provision_devices(root)
        account = login_session(root, Role.OPERATOR, config)
        photos = [str(f) for f in sorted((faces / "celeba-dev" / PERSON).glob("*.jpg"))[:3]]
        with console_kit.serving(create_app(config, root), root, pki) as url, \
                console_kit.launched_chromium(console_kit.spki_pin(pki.ca_cert.read_bytes())) as browser:
            context = browser.new_context(base_url=url, locale="en-US", viewport={"width": 1280, "height": 900})
            context.set_default_timeout(PAGE_TIMEOUT_MS)
            page = context.new_page()
            log_in(page, account)

            def fill_in() -> None:
                page.goto("/enroll?lang=en")
                page.check("input[name=consent_given]")
                page.fill("input[name=consent_ref]", CONSENT["consent_ref"])
                page.fill("input[name=name]", NAME)
                page.set_input_files("input[name=images]", photos)

            def submit() -> None:
                with page.expect_navigation():  # the answer's page, not the one the form was on
                    page.click("form.enroll button[type=submit]")
                page.wait_for_selector("#outcome, #problem")

            fill_in()
            filler = fill(root)  # the disk fills while the operator types
            submit()
            problem = page.inner_text("#problem")
            assert "cannot be written now" in problem and "disk is full" in problem, problem
            assert problem.endswith("Nothing was saved: free disk space on the server (or ask its administrator to), "
                                    "then try again."), problem
            assert page.input_value("input[name=name]") == NAME  # nothing to type again
            assert page.input_value("input[name=consent_ref]") == CONSENT["consent_ref"]
            shot(page, "enroll-full-disk")

            filler.unlink()  # room made: after the audit writer's pause the same form goes through
            time.sleep(1.0)
            page.set_input_files("input[name=images]", photos)  # a browser never keeps chosen files
            page.check("input[name=consent_given]")  # and consent is confirmed again, on purpose
            submit()
            assert not page.locator("#problem").count(), page.inner_text("#problem")
            assert page.locator("#outcome h2").inner_text() == "Enrolled"
            context.close()
