"""The access page in real headless Chromium, in English and in 中文: a security administrator
creates a group with a weekly schedule, grants it a door, adds an enrolled person (by staff
number, then by pseudonym), sees them listed by masked name, removes them; holidays, a visitor's
validity and an area show up; every change is in the audit log and moves the revision. An
operator reads the rules but gets no form, and a POST without the session's CSRF token changes
nothing.

The console is ``create_app`` under uvicorn over TLS with a certificate of the project PKI
(``console_kit``), over SQLCipher stores in the test's folder. Screenshots:
``reports/console/access.png`` and ``reports/console/zh_CN-access.png``.
"""
from __future__ import annotations

import time

import numpy as np
import pytest

from apikit import api_config, provision_devices
from appliance.security.consent import ENROLL_SCOPE, AgeBand, Alternative, ConsentRecord, Person, new_subject_id
from appliance.security.masking import mask_name
from appliance.security.roles import Principal, Role
from appliance.vision.templates import Template
from appliance.web.app import create_app
from authkit import login_session
from test_console_i18n import REPORTS, english_left, log_in, readable

PAGE_TIMEOUT_MS = 30_000
DESK = Principal("desk-1", Role.OPERATOR)
EMBEDDING_DIM = 512
PEOPLE = (("Zhao Min", "E-1042"), ("Qian Li", ""))
VIEWPORT = {"width": 1280, "height": 900}
# a form post from the page itself (with the browser's cookies), as a script on the site could send it
POST = """async (fields) => {
  const answer = await fetch("/access/groups", {method: "POST", body: new URLSearchParams(fields)});
  return [answer.status, await answer.text()];
}"""


def _enrolled(services, name: str, staff_no: str, seed: int) -> str:
    """A registered, consenting person with one stored template (its values do not matter to
    access rules; AccessAdmin only adds people who are enrolled)."""
    subject = new_subject_id()
    services.data.register_person(DESK, Person(subject, name, AgeBand.ADULT, Alternative.CARD, staff_no=staff_no))
    services.data.record_consent(DESK, ConsentRecord(subject, ENROLL_SCOPE, "v1", time.time(), name))
    vector = np.random.default_rng(seed).normal(size=EMBEDDING_DIM).astype(np.float32)
    services.data.enroll(DESK, subject, Template(vector / np.linalg.norm(vector), "w600k-mbf", "1.0.0"),
                         np.zeros(1, np.float32))
    return subject


@pytest.fixture(scope="module")
def site(tmp_path_factory, console_kit):
    folder = tmp_path_factory.mktemp("console-access")
    config = api_config()
    pki = provision_devices(folder)  # door-1 and door-2
    # one account per test: a second factor's code is accepted once (no replay within its window)
    admin, admin_zh = (login_session(folder, Role.SECURITY_ADMIN, config) for _ in range(2))
    operator = login_session(folder, Role.OPERATOR, config)
    app = create_app(config, folder)
    with console_kit.serving(app, folder, pki) as url:
        services = app.state.services
        with services.stores():
            subjects = [_enrolled(services, name, staff, seed) for seed, (name, staff) in enumerate(PEOPLE)]
        with console_kit.launched_chromium(console_kit.spki_pin(pki.ca_cert.read_bytes())) as browser:
            yield browser, url, services, (admin, admin_zh), operator, subjects


def _page(browser, url: str, locale: str):
    context = browser.new_context(base_url=url, locale=locale, viewport=VIEWPORT)
    context.set_default_timeout(PAGE_TIMEOUT_MS)
    page = context.new_page()
    page.on("dialog", lambda dialog: dialog.accept())  # the confirmations of removals
    return context, page


def _state(services) -> tuple[int, set[str]]:
    with services.stores():
        return services.data.biometric.revision, {e.action for e in services.data.audit.entries()}


def _create_group(page, name: str, days: dict[str, str]) -> None:
    form = page.locator("#new-group")
    form.locator("input[name=name]").fill(name)
    for day, windows in days.items():
        form.locator(f"input[name={day}]").fill(windows)
    form.locator("button[type=submit]").click()
    page.wait_for_selector("#done")


def _group(page, name: str):
    return page.locator(f"section.group[data-group='{name}']")


def _submit(page, form) -> None:
    form.locator("button[type=submit]").click()
    page.wait_for_selector("#done")


def test_a_group_with_a_door_a_schedule_and_a_member_in_english(site):
    browser, url, services, (admin, _), _, (zhao, _qian) = site
    revision, _ = _state(services)
    context, page = _page(browser, url, "en-US")
    page.goto("/login")
    log_in(page, admin)
    page.click("header nav a[href='/access']")
    assert page.locator("h1").inner_text() == "Access rules"
    assert "no access group yet" in page.inner_text("#not-enforced")

    _create_group(page, "lab", {"mon": "08:00-18:00", "fri": "08:00-12:00, 13:00-17:00", "sat": "22:00-06:00"})
    assert page.locator("#not-enforced").count() == 0  # enforced from the first group on
    lab = _group(page, "lab")
    cells = lab.locator("table.schedule tbody td").all_inner_texts()
    assert cells[0] == "08:00-18:00" and cells[4] == "08:00-12:00, 13:00-17:00" and cells[5] == "22:00-06:00"
    assert cells[7] == "closed on holidays"

    lab.locator("form[action='/access/doors'] input[name=door]").fill("door-1")
    _submit(page, lab.locator("form[action='/access/doors']"))
    assert _group(page, "lab").locator(".tag.door").all_inner_texts() == ["door-1"]
    lab = _group(page, "lab")
    lab.locator("form[action='/access/members'] input[name=person]").fill(PEOPLE[0][1])  # by staff number
    _submit(page, lab.locator("form[action='/access/members']"))
    row = _group(page, "lab").locator(f"tr[data-subject='{zhao}']")
    assert row.locator("td.name").inner_text() == mask_name("Zhao Min") != "Zhao Min"
    assert "1 member" in _group(page, "lab").locator("h3").nth(1).inner_text()

    page.fill("form[action='/access/holidays'] input[name=day]", "2026-10-01")
    page.fill("form[action='/access/holidays'] input[name=name]", "National Day")
    _submit(page, page.locator("form[action='/access/holidays']"))
    page.fill("form[action='/access/validity'] input[name=person]", zhao)
    page.fill("form[action='/access/validity'] input[name=valid_from]", "2026-12-01T09:00")
    page.fill("form[action='/access/validity'] input[name=valid_until]", "2026-12-05T18:00")
    _submit(page, page.locator("form[action='/access/validity']"))
    page.fill("form[action='/access/areas'] input[name=area]", "lab")
    page.select_option("form[action='/access/areas'] select[name=mode]", "hard")
    page.fill("form[action='/access/areas'] input[name=entries]", "door-1")
    page.fill("form[action='/access/areas'] input[name=exits]", "door-2")
    _submit(page, page.locator("form[action='/access/areas']"))
    assert "National Day" in page.inner_text("#holidays")
    assert "2026-12-01 09:00" in page.inner_text("#validity") and "2026-12-05 18:00" in page.inner_text("#validity")
    assert "hard" in page.inner_text("#areas") and "door-2 exit" in page.inner_text("#areas")
    REPORTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(REPORTS / "access.png"), full_page=True)

    _group(page, "lab").locator(f"tr[data-subject='{zhao}'] form button").click()
    page.wait_for_selector("#done")
    assert _group(page, "lab").locator(f"tr[data-subject='{zhao}']").count() == 0
    assert "Nobody is in this group." in _group(page, "lab").inner_text()

    before = _state(services)  # bad input: a clear refusal, nothing stored, no revision
    page.locator("#new-group input[name=name]").fill("night")
    page.locator("#new-group input[name=mon]").fill("22:00-25:00")
    page.locator("#new-group button[type=submit]").click()
    assert "configuration invalid" in page.inner_text("#problem-text").lower()
    assert "25:00" in page.inner_text("#problem-text")
    assert _state(services)[0] == before[0]
    with services.stores():
        assert services.sync.group_names() == ["lab"]
    context.close()

    after, actions = _state(services)
    assert after > revision
    assert {"access.group.create", "access.doors.grant", "access.member.add", "access.member.remove",
            "access.holiday.add", "access.validity.set", "access.area.set"} <= actions


def test_the_same_in_chinese(site):
    browser, url, services, (_, admin), _, (_zhao, qian) = site
    context, page = _page(browser, url, "zh-CN")
    page.goto("/login")
    log_in(page, admin)
    page.goto("/access")
    assert page.evaluate("document.documentElement.lang") == "zh-CN"
    assert page.locator("h1").inner_text() == "门禁规则"

    _create_group(page, "office", {"tue": "07:30-19:00", "wed": "07:30-19:00"})
    assert "已保存并记入审计日志" in page.inner_text("#done")
    office = _group(page, "office")
    assert office.locator("table.schedule thead th").all_inner_texts()[:2] == ["周一", "周二"]
    office.locator("form[action='/access/doors'] input[name=door]").fill("door-2")
    _submit(page, office.locator("form[action='/access/doors']"))
    office = _group(page, "office")
    office.locator("form[action='/access/members'] input[name=person]").fill(qian)  # by pseudonym
    _submit(page, office.locator("form[action='/access/members']"))
    row = _group(page, "office").locator(f"tr[data-subject='{qian}']")
    assert row.locator("td.name").inner_text() == mask_name("Qian Li")
    assert "1 名成员" in _group(page, "office").inner_text()
    page.wait_for_timeout(200)
    REPORTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(REPORTS / "zh_CN-access.png"), full_page=True)
    data = {admin[0], "door-1", "door-2", "lab", "office", "National Day", mask_name("Zhao Min"),
            mask_name("Qian Li")}
    assert english_left(readable(page), data) == []

    _group(page, "office").locator(f"tr[data-subject='{qian}'] form button").click()
    page.wait_for_selector("#done")
    assert _group(page, "office").locator(f"tr[data-subject='{qian}']").count() == 0
    assert "此组没有成员" in _group(page, "office").inner_text()
    bad = _group(page, "office").locator("form[action='/access/members']")
    bad.locator("input[name=person]").fill("s-00000000")  # nobody: a clear refusal in the page's language
    bad.locator("button[type=submit]").click()
    assert page.inner_text("#problem-text").startswith("未找到该人员")
    context.close()


def test_an_operator_reads_without_forms_and_a_forged_post_changes_nothing(site):
    browser, url, services, _, operator, _ = site
    context, page = _page(browser, url, "en-US")
    page.goto("/login")
    log_in(page, operator)
    assert "Access" in page.locator("header nav a").all_inner_texts()
    page.goto("/access")
    assert page.locator("h1").inner_text() == "Access rules"
    assert page.locator("form[action^='/access']").count() == 0
    assert "Your role may read these rules" in page.inner_text("main")

    before = _state(services)
    status, text = page.evaluate(POST, {"name": "forged", "csrf": "not-the-token"})
    assert status == 403 and "form is out of date" in text
    own = page.locator("header form[action='/logout'] input[name=csrf]").get_attribute("value")
    status, text = page.evaluate(POST, {"name": "forged", "csrf": own})  # the session's token, no MANAGE_DEVICES
    assert status == 403 and "permission denied" in text
    assert _state(services) == before
    with services.stores():
        assert "forged" not in services.sync.group_names()
    context.close()
