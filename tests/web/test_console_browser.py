"""The administrator's console in real headless Chromium, over TLS, on a whole running site.

One site for the module (``conftest.console_site``: Mosquitto with TLS and ACL, a matcher
replica, door ``door-a``, the console served by uvicorn); the tests run in order, as a day
at the desk does: an operator logs in with a TOTP code, switches the consent notice to
Chinese and back, enrolls a person from photos (one
photo refused with its reason), sees the same face refused under another name, watches a door
pass appear live on the events page and exports the door log; a security administrator
overrides a duplicate with a reason, deletes the person and reads the signed receipt; an
auditor verifies the log. A full-page screenshot of each page goes to ``reports/console/``.
"""
from __future__ import annotations

import csv
import io
import re
import shutil
from pathlib import Path

import pytest

from appliance.capture.sources import FolderReplaySource
from appliance.edge.daemon import EdgeDaemon, EdgeSettings
from appliance.edge.hardware import ConsoleDisplay, LogActuator
from appliance.ops import totp
from appliance.ops.accounts import LOGIN_REFUSED
from appliance.security.masking import mask_name
from appliance.security.roles import Role
from appliance.web.console_doors import DOORS_REFRESH_S
from authkit import login_session
from browserkit import log_in, shot

PERSON = "Zhang San"
OTHER_NAME = "Li Si"
PERSON_FOLDER = "celeba-dev/id07201"
ENROLL_PHOTOS = ("001085.jpg", "007710.jpg")
DUPLICATE_PHOTOS = ("017588.jpg", "018834.jpg")
DOOR_PHOTO = "021650.jpg"
EYES_CLOSED = "yale/subject01/sleepy.png"  # refused by the enrollment profile: eyes closed
FRAMES_PER_PASS = 3
LIVE_TIMEOUT_MS = 60_000  # a pass reaches the page via outbox, broker, matcher and stream
DOORS_REFRESH_MS = DOORS_REFRESH_S * 1000  # doors.js refreshes the live status this often
# the English notice for the enrollments (the assertions read English text); the default notice
# is zh-CN, switched to and shot once (fonts-noto-cjk, from scripts/bootstrap.sh, renders it)
ENROLL_PAGE = "/enroll?lang=en"
CHINESE_PAGE = "/enroll?lang=zh-CN"
CHINESE_TITLE = "人脸信息采集告知书"  # the zh-CN notice's first line (config/notices/)
# the refusals the tests provoke (a wrong login: 401; a forged form, a page not for the role: 403)
EXPECTED_REFUSAL = re.compile(r"Failed to load resource: the server responded with a status of 40[13]")
PAGE_TIMEOUT_MS = 60_000  # the first enrollment loads the face models in the console
OVERRIDE_REASON = "identical twin of the person enrolled, checked against the ID card at the desk"


@pytest.fixture
def account(console_site):
    """A new real account of a role: (name, password, TOTP secret). New for each login, as a
    TOTP code is accepted once: two logins of one account within a 30 s step would fail."""
    return lambda role: login_session(console_site.folder, role, console_site.config)


@pytest.fixture(scope="module")
def visited():
    """Every URL the browser asked for: the proof that no name went into one."""
    return []


@pytest.fixture(scope="module")
def browser_errors():
    """Errors the pages logged in the browser (a script refused by the CSP would be one)."""
    return []


@pytest.fixture
def new_page(chromium, console_site, visited, browser_errors):
    """A page in a fresh browser context (its own cookies), watched for URLs and errors."""
    def open_page():
        context = chromium.new_context(base_url=console_site.url, viewport={"width": 1280, "height": 860},
                                       accept_downloads=True)
        context.set_default_timeout(PAGE_TIMEOUT_MS)
        page = context.new_page()
        page.on("request", lambda request: visited.append(request.url))
        page.on("console", lambda message: message.type == "error" and not EXPECTED_REFUSAL.search(message.text)
                and browser_errors.append(f"{page.url}: {message.text}"))
        page.on("pageerror", lambda error: browser_errors.append(str(error)))
        page.on("dialog", lambda dialog: dialog.accept())  # "Erase ... everywhere?"
        return page

    return open_page


def nav_labels(page) -> list[str]:
    return [text.strip() for text in page.locator("header nav a").all_inner_texts()]


def enroll(page, faces: Path, name: str, photos: list[Path], consent_ref: str, override: str = "") -> None:
    page.goto(ENROLL_PAGE)
    page.check("input[name=consent_given]")
    page.fill("input[name=consent_ref]", consent_ref)
    page.fill("input[name=name]", name)
    page.fill("input[name=card_no]", "C-20261201")
    page.fill("input[name=groups]", "lobby")
    page.set_input_files("input[name=images]", [str(p) for p in photos])
    if override:
        page.fill("textarea[name=override_reason]", override)
    page.click("form.enroll button[type=submit]")
    page.wait_for_selector("#outcome, #problem")
    problem = page.locator("#problem")
    assert not problem.count(), problem.inner_text()


# -- the operator ---------------------------------------------------------------------------
def test_login_refuses_alike_then_takes_the_totp_code(new_page, console_site, account):
    name, password, secret = account(Role.OPERATOR)
    page = new_page()
    page.goto("/people")  # not logged in: to the login page
    assert page.url.endswith("/login")
    refusals = []
    for who, word in ((name, "wrong-password-Zz9!"), ("nobody-here", password)):
        page.fill("input[name=account]", who)
        page.fill("input[name=password]", word)
        page.fill("input[name=code]", totp.totp(secret))
        page.click("button[type=submit]")
        refusals.append(page.text_content("#login-refused"))
    assert refusals == [LOGIN_REFUSED, LOGIN_REFUSED]  # the same text whatever was wrong
    shot(page, "login")
    log_in(page, account(Role.OPERATOR))
    assert page.text_content("#role-badge") == "operator"
    assert nav_labels(page) == ["People", "Enroll", "Events", "Access"]  # no doors, audit or accounts

    cookies = {c["name"]: c for c in page.context.cookies()}
    session = cookies["appliance_session"]
    assert session["httpOnly"] and session["secure"] and session["sameSite"] == "Strict"
    response = page.goto("/people")
    headers = response.headers
    assert "script-src 'self'" in headers["content-security-policy"]
    assert "unsafe-inline" not in headers["content-security-policy"]
    assert headers["x-frame-options"] == "DENY"
    page.context.close()


def test_enroll_from_photos_then_the_same_face_is_refused(new_page, console_site, account, faces):
    page = new_page()
    log_in(page, account(Role.OPERATOR))
    page.goto(ENROLL_PAGE)
    page.click("#notice .languages a[lang=zh-CN]")  # the notice's language switch (the console stays English)
    assert page.url.endswith(CHINESE_PAGE)
    assert page.get_attribute("#notice", "lang") == "zh-CN"
    assert CHINESE_TITLE in page.inner_text("#notice .notice-body")
    english = page.locator("input[name=notice_version]").input_value()
    shot(page, "enroll-zh")
    page.click("#notice .languages a[lang=en]")
    assert page.locator("input[name=notice_version]").input_value() == english  # one version, two languages
    # the notice comes before anything is asked
    notice_top = page.locator("#notice").bounding_box()["y"]
    assert notice_top < page.locator("input[name=consent_given]").bounding_box()["y"]
    assert "separate consent" in page.inner_text("#notice")

    photos = [faces / EYES_CLOSED] + [faces / PERSON_FOLDER / f for f in ENROLL_PHOTOS]
    enroll(page, faces, PERSON, photos, "FORM-2026-0001")
    assert page.locator("#outcome h2").inner_text() == "Enrolled"
    rows = page.locator("#photo-feedback tbody tr")
    assert rows.count() == len(photos)
    first = rows.nth(0).inner_text()
    assert "rejected" in first and "eyes closed" in first  # the reason, and what to change
    assert rows.nth(0).locator("td").nth(4).inner_text().strip()
    assert [rows.nth(n).locator(".verdict").inner_text() for n in (1, 2)] == ["accepted", "accepted"]
    shot(page, "enroll")

    enroll(page, faces, OTHER_NAME, [faces / PERSON_FOLDER / f for f in DUPLICATE_PHOTOS], "FORM-2026-0002")
    assert page.locator("#outcome h2").inner_text().startswith("Refused")
    message = page.inner_text("#outcome-message")
    assert f"already enrolled as {mask_name(PERSON)} (s-" in message
    assert page.input_value("input[name=name]") == OTHER_NAME  # the form kept what was typed
    assert page.locator("textarea[name=override_reason]").count() == 0  # an operator cannot override
    shot(page, "enroll-duplicate")

    page.goto("/people")
    assert page.inner_text("#people-count").startswith("1 person")
    row = page.locator("#people tbody tr").first.inner_text()
    assert mask_name(PERSON) in row and PERSON not in row
    groups = page.locator("#people tbody tr").first.locator("input[name=groups]")
    assert groups.input_value() == "lobby"
    groups.fill("lobby lab-2")
    page.locator("#people tbody tr").first.locator("form.groups button").click()
    page.wait_for_load_state()
    assert page.locator("#people tbody tr").first.locator("input[name=groups]").input_value() == "lab-2 lobby"  # sorted
    assert page.locator("button", has_text="Unmask").count() == 0  # an operator sees masked names only
    shot(page, "people")
    page.context.close()


def test_a_door_pass_appears_live_and_exports_as_csv(new_page, console_site, account, pipeline, faces, tmp_path):
    page = new_page()
    log_in(page, account(Role.OPERATOR))
    page.goto("/events")
    page.wait_for_selector("#live-state.on")  # the stream is open before the pass
    assert page.locator("#event-rows tr").count() == 0

    door, name = console_site.door, console_site.door_name
    assert door.sync.wait_current(LIVE_TIMEOUT_MS / 1000)
    frames = tmp_path / "frames"
    frames.mkdir()
    for copy in range(FRAMES_PER_PASS):
        shutil.copy(faces / PERSON_FOLDER / DOOR_PHOTO, frames / f"{copy:03d}.jpg")
    daemon = EdgeDaemon(EdgeSettings(name, cool_down_s=0.0), pipeline, door.decider, actuator=LogActuator(),
                        display=ConsoleDisplay(), emit=door.emit)
    (passed,) = daemon.run(FolderReplaySource(frames).frames())
    assert passed.outcome == "accepted", passed

    row = page.locator("#event-rows tr.fresh").first  # added by the stream, not by a reload
    row.wait_for(timeout=LIVE_TIMEOUT_MS)
    cells = row.locator("td").all_inner_texts()
    assert cells[1:5] == [name, "event", "pass", "accepted"]
    shot(page, "events")

    with page.expect_download() as download:
        page.click("#csv-export")
    text = Path(download.value.path()).read_text(encoding="utf-8")
    exported = list(csv.DictReader(io.StringIO(text)))
    assert [(r["device"], r["kind"], r["outcome"]) for r in exported] == [(name, "pass", "accepted")]
    assert PERSON not in text
    page.context.close()


# -- the security administrator ---------------------------------------------------------------
def test_a_security_administrator_overrides_a_duplicate_with_a_reason(new_page, console_site, account, faces):
    page = new_page()
    log_in(page, account(Role.SECURITY_ADMIN))
    assert page.text_content("#role-badge") == "security administrator"
    assert nav_labels(page) == ["People", "Enroll", "Doors", "Events", "Access", "Audit", "Accounts"]
    enroll(page, faces, OTHER_NAME, [faces / PERSON_FOLDER / f for f in DUPLICATE_PHOTOS], "FORM-2026-0003",
           override=OVERRIDE_REASON)
    assert page.locator("#outcome h2").inner_text() == "Enrolled"
    assert "duplicate overridden" in page.inner_text("#outcome-message")
    page.context.close()


def test_deletion_needs_the_form_token_and_shows_the_signed_receipt(new_page, console_site, account):
    page = new_page()
    log_in(page, account(Role.SECURITY_ADMIN))
    page.goto("/people")
    page.fill("input[name=query]", PERSON)
    page.click("form.search button")
    assert page.inner_text("#people-count").startswith("1 person matching")
    subject = page.locator("#people tbody tr input[name=subject_id]").first.input_value()

    # the same form with a forged CSRF token (as another site would have to send it) is
    # refused and deletes nothing
    form = page.locator(f"form[action='/people/delete']:has(input[value='{subject}'])")
    form.locator("input[name=csrf]").evaluate("field => { field.value = 'forged'; }")
    with page.expect_response("**/people/delete") as answer:
        form.locator("button.danger").click()
    assert answer.value.status == 403
    assert "out of date or came from elsewhere" in page.inner_text("#problem-text")
    page.goto("/people")
    assert page.locator(f"form[action='/people/delete'] input[value='{subject}']").count() == 1

    page.click(f"form[action='/people/reveal']:has(input[value='{subject}']) button")
    assert page.inner_text("#revealed-name") == PERSON  # unmasked for this role, and logged
    page.fill("input[name=query]", PERSON)
    page.click("form.search button")
    page.click(f"form[action='/people/delete']:has(input[value='{subject}']) button")
    page.wait_for_selector("#receipt")
    assert page.inner_text("#receipt-valid").startswith("signature valid")
    assert page.inner_text("#receipt-id").strip()
    assert subject in page.inner_text("#receipt")
    assert page.locator(f"#people input[name=subject_id][value='{subject}']").count() == 0
    shot(page, "people-deleted")
    page.context.close()


def test_doors_and_accounts_pages(new_page, console_site, account):
    page = new_page()
    log_in(page, account(Role.SECURITY_ADMIN))
    page.clock.install()  # the page's own timers, so the next refresh need not be waited for in real time
    page.goto("/doors")
    row = page.locator("#doors tbody tr", has_text=console_site.door_name)
    assert "online" in row.inner_text() and row.locator("button", has_text="Revoke").count() == 1
    page.clock.fast_forward(DOORS_REFRESH_MS)  # doors.js's interval fires; its fetch of /api/devices is real
    page.wait_for_selector("#doors-checked:has-text('updated')", timeout=LIVE_TIMEOUT_MS)  # doors.js ran
    assert "online" in row.locator(".state").inner_text()
    shot(page, "doors")

    page.goto("/accounts")
    page.fill("form[action='/accounts'] input[name=name]", "desk-2")
    page.select_option("form[action='/accounts'] select[name=role]", "operator")
    page.fill("form[action='/accounts'] input[name=password]", "Correct-Horse-Battery-77")
    page.click("form[action='/accounts'] button")
    secret = page.inner_text("#totp-secret").strip()
    assert re.fullmatch(r"[A-Z2-7]{16,}", secret)
    page.goto("/accounts")
    assert secret not in page.content()  # shown once
    page.select_option("form[action='/tokens'] select[name=account]", "desk-2")
    page.check("form[action='/tokens'] input[value='events:read']")
    page.fill("form[action='/tokens'] input[name=label]", "door-log export")
    page.click("form[action='/tokens'] button")
    token = page.inner_text("#token-secret").strip()
    assert token.startswith("apt_")
    shot(page, "accounts")
    page.click("#tokens tr:has-text('door-log export') button.danger")
    assert "revoked" in page.locator("#tokens tr", has_text="door-log export").inner_text()
    page.context.close()


# -- the auditor ----------------------------------------------------------------------------
def test_the_auditor_reads_the_masked_log_and_verifies_it(new_page, console_site, account):
    page = new_page()
    log_in(page, account(Role.AUDITOR))
    assert nav_labels(page) == ["Events", "Access", "Audit"]
    page.goto("/audit")
    log_text = page.inner_text("#audit")
    assert all(action in log_text for action in ("subject.delete", "enrollment.override", "identity.reveal",
                                                  "subject.groups"))
    assert PERSON not in log_text and OTHER_NAME not in log_text
    page.click("form[action='/audit/verify'] button")
    assert page.inner_text("#verdict").startswith("Intact")
    shot(page, "audit")
    page.goto("/accounts")  # not the auditor's: refused with a page, not a stack trace
    assert "permission denied" in page.inner_text("main").lower()
    page.click("form[action='/logout'] button")
    assert page.url.endswith("/login")
    page.goto("/audit")
    assert page.url.endswith("/login")
    page.context.close()


def test_no_name_went_into_a_url_and_no_page_had_an_error(visited, browser_errors):
    assert visited, "the browser tests above ran first"
    assert not browser_errors  # e.g. a script the Content-Security-Policy refused
    for name in (PERSON, OTHER_NAME):
        for variant in (name, name.replace(" ", "+"), name.replace(" ", "%20")):
            assert not [url for url in visited if variant in url], name
