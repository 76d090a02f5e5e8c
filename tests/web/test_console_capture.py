"""The enroll page's "capture at a door", end to end: the console served by uvicorn over TLS
on the site of ``tests/transport``'s capture test - a real Mosquitto with TLS and the
rendered access rules, a real ``appliance edge`` process (real models, a folder of real face
photos as its camera, ``[device] enroll_capture = true``) - driven by headless Chromium and,
for the refusals, by plain HTTPS requests carrying the session cookie and the form's CSRF
token. The page calls the REST route's own function, so what is checked here is what the
page adds: the form, the per-capture feedback, the refusals' text, CSRF, no name in a URL.
"""
from __future__ import annotations

import dataclasses
import ssl
import sys
import threading
from pathlib import Path

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "transport"))

from authkit import login_session  # noqa: E402
from polling import wait_for  # noqa: E402
from test_console_browser import log_in, shot  # noqa: E402
from test_console_pages import csrf_of  # noqa: E402
from test_console_pages import log_in as http_log_in  # noqa: E402
from test_enroll_capture_e2e import (  # noqa: E402,F401 - capture_site is a fixture used by name
    CONSOLE, DOOR, OFFLINE_DOOR, REVOKED_DOOR, capture_site,
)

from appliance.config import ConsoleConfig  # noqa: E402
from appliance.security.masking import mask_name  # noqa: E402
from appliance.security.roles import Role  # noqa: E402
from appliance.web.app import create_app  # noqa: E402

PERSON, OTHER_NAME = "Wang Wu", "Zhao Liu"
GENEROUS = {"requests_per_s": 10_000.0, "request_burst": 10_000}
CAPTURE_TIMEOUT_S = 20.0  # the door here captures in seconds; an offline door is waited for this + 5 s
# the offline door's test: nothing will answer, so what is checked is the refusal after the wait,
# not its length; the console reads [console] capture_timeout_s per request
NO_ANSWER_TIMEOUT_S = 1.0
PAGE_TIMEOUT_MS = 90_000  # the first capture loads the face models in the console
ANSWER_S = 60.0
FORBIDDEN, CONFLICT = 403, 409  # PKI_ERROR: a door that is revoked or no door at all


@dataclasses.dataclass
class Served:
    url: str
    app: object
    folder: Path
    config: object
    ca_file: Path

    def account(self, role: Role) -> tuple[str, str, str]:
        return login_session(self.folder, role, self.config)

    def http(self) -> httpx.Client:
        """A client of its own (its own cookies) that trusts only the project CA."""
        return httpx.Client(base_url=self.url, verify=ssl.create_default_context(cafile=str(self.ca_file)),
                            timeout=ANSWER_S + CAPTURE_TIMEOUT_S)

    def capture_requests(self) -> int:
        return self.app.state.services.capture().stats["requests"]


@pytest.fixture(scope="module")
def served(capture_site, config, console_kit):  # noqa: F811 - the imported fixture
    settings = dataclasses.replace(
        config, security=capture_site.security(config),
        console=dataclasses.replace(ConsoleConfig(), **GENEROUS, capture_identity=CONSOLE,
                                    capture_timeout_s=CAPTURE_TIMEOUT_S),
        ops=dataclasses.replace(config.ops, broker_host=capture_site.broker.host,
                                broker_port=capture_site.broker.port))
    login_session(capture_site.folder, Role.OPERATOR, settings)  # the keys and first accounts, before the app
    app = create_app(settings, capture_site.folder)
    with console_kit.serving(app, capture_site.folder, capture_site.broker.pki) as url:
        yield Served(url, app, capture_site.folder, settings, capture_site.broker.pki.ca_cert)


@pytest.fixture(scope="module")
def browser(served, console_kit):
    with console_kit.launched_chromium(console_kit.spki_pin(served.ca_file.read_bytes())) as chromium:
        yield chromium


@pytest.fixture(scope="module")
def visited():
    return []


@pytest.fixture
def page(browser, served, visited):
    context = browser.new_context(base_url=served.url, viewport={"width": 1280, "height": 860})
    context.set_default_timeout(PAGE_TIMEOUT_MS)
    opened = context.new_page()
    opened.on("request", lambda request: visited.append(request.url))
    yield opened
    context.close()


def capture_at(page, door: str, name: str, consent_ref: str) -> None:
    page.goto("/enroll?lang=en")
    page.check("input[name=consent_given]")
    page.fill("input[name=consent_ref]", consent_ref)
    page.fill("input[name=name]", name)
    page.check("input[name=source][value=door]")
    assert not page.locator("input[name=images]").is_visible()  # the photo field gives way to the door
    page.select_option("select[name=door]", door)
    page.click("form.enroll button[type=submit]")
    page.wait_for_selector("#outcome, #capture-refusal, #problem")
    problem = page.locator("#problem")
    assert not problem.count(), problem.inner_text()


def test_a_capture_at_a_door_enrolls_then_the_same_face_is_refused(page, served):
    log_in(page, served.account(Role.OPERATOR))
    page.goto("/enroll?lang=en")
    doors = page.locator("select[name=door] option").all_inner_texts()
    assert [d.split(" ")[0] for d in doors] == [DOOR, OFFLINE_DOOR]  # the revoked door is not offered
    assert "enroll_capture" in page.text_content("fieldset.face")  # where a door's capture is switched on

    capture_at(page, DOOR, PERSON, "FORM-2026-0101")
    assert page.locator("#outcome h2").inner_text() == "Enrolled"
    assert f"capture(s) at {DOOR}" in page.inner_text("#outcome-message")
    rows = page.locator("#photo-feedback tbody tr")
    verdicts = [rows.nth(n).locator(".verdict").inner_text() for n in range(rows.count())]
    assert verdicts.count("accepted") >= 1 and set(verdicts) <= {"accepted", "rejected"}
    assert rows.first.locator("td").first.inner_text() == "capture 1"
    shot(page, "enroll-capture")

    capture_at(page, DOOR, OTHER_NAME, "FORM-2026-0102")
    assert page.locator("#outcome h2").inner_text().startswith("Refused")
    assert f"already enrolled as {mask_name(PERSON)} (s-" in page.inner_text("#outcome-message")
    assert page.input_value("input[name=name]") == OTHER_NAME  # kept for the next try
    assert page.input_value("select[name=door]") == DOOR
    shot(page, "enroll-capture-duplicate")


def test_a_busy_door_says_so(served):
    with served.http() as first, served.http() as second:
        for client in (first, second):
            assert http_log_in(client, served.account(Role.OPERATOR)).status_code == 303
        before = served.capture_requests()
        answers = {}
        worker = threading.Thread(target=lambda: answers.setdefault(
            "first", post_capture(first, DOOR, "Sun Qi", "FORM-2026-0103")))
        worker.start()
        assert wait_for(lambda: served.capture_requests() > before, ANSWER_S)
        busy = post_capture(second, DOOR, "Sun Qi", "FORM-2026-0104")  # while the door still captures
        worker.join(ANSWER_S)
        assert busy.status_code == 200, busy.text
        assert "the door is busy with another enrollment" in busy.text
        assert "wait until the enrollment under way at this door is done" in busy.text
        assert f"{DOOR} answered: busy" in busy.text
        assert "Sun Qi" in busy.text  # the form keeps what was typed (in the page, never a URL)
        assert 'id="outcome"' in answers["first"].text  # the first one got its answer


def test_a_door_that_does_not_answer_says_so(page, served, monkeypatch):
    services = served.app.state.services
    console = dataclasses.replace(services.config.console, capture_timeout_s=NO_ANSWER_TIMEOUT_S)
    monkeypatch.setattr(services, "config", dataclasses.replace(services.config, console=console))
    log_in(page, served.account(Role.OPERATOR))
    capture_at(page, OFFLINE_DOOR, "Sun Qi", "FORM-2026-0105")  # waits [console] capture_timeout_s + 5 s
    assert page.inner_text("#capture-refusal h2") == "Not captured: the door did not answer"
    assert "check that the door is online and running" in page.inner_text("#capture-refusal-guidance")
    assert f"{OFFLINE_DOOR} answered: nothing" in page.inner_text("#capture-refusal")
    assert page.input_value("input[name=consent_ref]") == "FORM-2026-0105"  # ready to try another door
    assert page.is_checked("input[name=source][value=door]")
    shot(page, "enroll-capture-no-answer")


def test_a_forged_form_a_revoked_door_and_a_bad_name_ask_no_door(served):
    with served.http() as client:
        http_log_in(client, served.account(Role.OPERATOR))
        before = served.capture_requests()
        forged = post_capture(client, DOOR, PERSON, "FORM-2026-0106", csrf="forged")
        assert forged.status_code == FORBIDDEN and "came from elsewhere" in forged.text
        revoked = post_capture(client, REVOKED_DOOR, PERSON, "FORM-2026-0107")
        assert revoked.status_code == CONFLICT and "revoked" in revoked.text
        bad = post_capture(client, "Door Z", PERSON, "FORM-2026-0108")
        assert bad.status_code == CONFLICT and "not a door name" in bad.text
        assert served.capture_requests() == before

    with served.http() as auditor:  # a valid form token, but no enroll permission: refused, no door asked
        http_log_in(auditor, served.account(Role.AUDITOR))
        token = csrf_of(auditor.get("/audit").text)
        refused = post_capture(auditor, DOOR, PERSON, "FORM-2026-0109", csrf=token)
        assert refused.status_code == FORBIDDEN and "permission denied" in refused.text
    assert served.capture_requests() == before


def test_no_name_went_into_a_url(visited):
    assert visited
    for name in (PERSON, OTHER_NAME):
        assert not [url for url in visited if name.split()[0] in url]


def post_capture(client: httpx.Client, door: str, name: str, consent_ref: str, csrf: str | None = None):
    token = csrf_of(client.get("/enroll?lang=en").text) if csrf is None else csrf
    return client.post("/enroll", data={"csrf": token, "consent_given": "true", "consent_ref": consent_ref,
                                        "name": name, "source": "door", "door": door, "notice_version": "",
                                        "language": "en"})
