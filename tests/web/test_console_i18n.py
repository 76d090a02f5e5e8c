"""The console in Chinese and English: the language a request gets, the catalogs against the
templates, and every page in real headless Chromium switched to 中文.

The browser part serves ``create_app`` with uvicorn over TLS (``console_kit``) on a folder with
two provisioned doors, door events, people, an API token and accounts of the roles, logs in
from a browser whose Accept-Language is English, clicks 中文 in the header and opens every page.
On each, every text node and every attribute a person reads is checked against the zh_CN
catalog: once the catalog's Chinese texts and the data the page shows (names, doors, ids,
times, marked ``translate="no"`` or known to the test) are taken out, no English word may be
left. A screenshot of each goes to ``reports/console/zh_CN-<page>.png``.
"""
from __future__ import annotations

import re
import time
from html.parser import HTMLParser
from pathlib import Path
from types import SimpleNamespace

import pytest

from apikit import api_config, door_event, provision_devices, running
from appliance.errors import ErrorCode
from appliance.matcher.enrollment_types import (DUPLICATE, ENROLLED, FAILED_TO_ENROL, EnrollmentOutcome, Rejection,
                                                Usability)
from appliance.protocol.capture_messages import BUSY
from appliance.i18n import missing_translations, read_catalog
from appliance.ops import totp
from appliance.security.consent import NOTICE_LANGUAGES, AgeBand, Alternative, Person, new_subject_id, notice
from appliance.security.roles import Principal, Role
from appliance.web import api_capture, console_capture, console_catalog, console_enroll, console_i18n
from appliance.web.app import create_app
from authkit import login_session, make_token

REPORTS = Path(__file__).resolve().parents[2] / "reports" / "console"
PAGE_TIMEOUT_MS = 30_000
SEE_OTHER = 303
PLACEHOLDER = re.compile(r"%\(\w+\)s|<[^>]+>")
ENGLISH_WORD = re.compile(r"[A-Za-z]{2,}")
CHINESE = re.compile(r"[\u3000-\u303f\u4e00-\u9fff\uff00-\uffef]")  # CJK ideographs and punctuation
# what pages show that is data, not wording: times ("2026年12月2日 09:30:00 UTC"), counts, ids
DATA = re.compile(r"\{time\}|\bUTC\b|\b(?:s|apt|tok)[-_][0-9A-Za-z_-]+|[0-9a-f]{8,}|\d+")
PEOPLE = ("Zhang San", "Li Si")
# the text nodes and the attributes a person reads, outside what the page marks as data
READABLE = """() => {
  const out = [document.title];
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    const parent = node.parentElement;
    if (parent.closest('[translate="no"], script, style')) { continue; }
    out.push(node.textContent);
  }
  const attributes = ["title", "placeholder", "aria-label", "data-confirm", "data-live", "data-interrupted",
                      "data-updated", "data-never", "data-label-online", "data-label-offline", "data-label-revoked"];
  for (const element of document.querySelectorAll("*")) {
    if (element.closest('[translate="no"]')) { continue; }
    for (const name of attributes) {
      if (element.hasAttribute(name)) { out.push(element.getAttribute(name)); }
    }
  }
  return out.map((text) => text.trim()).filter((text) => text);
}"""


# -- the catalogs --------------------------------------------------------------------------
def test_every_marked_string_is_in_both_catalogs_and_translated():
    """Babel's extractors over the templates and console modules (``appliance/web/babel.cfg``)
    find exactly the msgids of both catalogs; zh_CN translates each, placeholders intact."""
    wanted = set(console_catalog.msgids())
    assert len(wanted) > 300
    for language in ("zh_CN", "en"):
        catalog = read_catalog(language, console_i18n.DOMAIN)
        held = {m.id if isinstance(m.id, str) else tuple(m.id) for m in catalog if m.id}
        assert wanted - held == set(), f"{language}: run python -m appliance.web.console_catalog and translate"
        assert held - wanted == set(), f"{language}: msgids no page uses any more"
        assert [(m.id, errors) for m, errors in catalog.check()] == []  # python-format placeholders agree
    assert missing_translations(console_i18n.DOMAIN) == {"zh_CN": [], "en": []}
    chinese = read_catalog("zh_CN", console_i18n.DOMAIN)
    for message in chinese:
        if message.id:
            texts = message.string if isinstance(message.string, tuple) else (message.string,)
            assert all(CHINESE.search(t) for t in texts), message.id  # written in Chinese, not a copy


def test_the_extractor_sees_templates_modules_and_the_texts_of_other_layers():
    found = console_catalog.extracted()
    sources = {path.split("/")[0] for locations in found.values() for path, _ in locations}
    assert {"templates"} <= sources and any(s.startswith("console") for s in sources)
    assert "Log in" in found and "Export CSV" in found  # {{ _() }} in base/login/events
    assert "Your session ended (logged out or idle too long). Log in again." in found  # N_ in console_session
    assert "choose the door where the person stands" in found  # say() in console_capture
    assert ("%(count)s person; showing %(first)s–%(last)s.",
            "%(count)s people; showing %(first)s–%(last)s.") in found  # {% pluralize %}
    unextracted = console_catalog.unextracted()
    assert {code.title for code in ErrorCode} <= set(unextracted)


def test_every_value_the_pages_name_has_words():
    """Roles, age bands and alternatives are shown by ``|label``, never as raw values."""
    for value in [*Role, *AgeBand, *Alternative]:
        assert value.value in console_i18n.VALUE_LABELS, value


# -- the states a page reaches only after an action, rendered in Chinese -----------------------
class Readable(HTMLParser):
    """The text nodes and attributes a person reads, outside elements marked translate="no"."""

    VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "wbr"}
    ATTRIBUTES = ("title", "placeholder", "aria-label", "data-confirm")

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[bool] = []  # per open element: is it (or an ancestor) data?
        self.texts: list[str] = []

    def handle_starttag(self, tag: str, attrs: list) -> None:
        values = dict(attrs)
        data = bool(self.stack and self.stack[-1]) or values.get("translate") == "no"
        if not data:
            self.texts += [values[name] for name in self.ATTRIBUTES if values.get(name)]
        if tag not in self.VOID:
            self.stack.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag not in self.VOID and self.stack:
            self.stack.pop()

    def handle_data(self, data: str) -> None:
        if data.strip() and not (self.stack and self.stack[-1]):
            self.texts.append(data.strip())


def rendered_texts(template: str, **context) -> list[str]:
    principal = Principal("sec-1", Role.SECURITY_ADMIN)
    page = console_i18n.templates("zh_CN").get_template(template).render(
        principal=principal, nav=[], csrf="t", csrf_field="csrf", path="/enroll", return_to="/enroll", **context)
    assert '<html lang="zh-CN">' in page
    parser = Readable()
    parser.feed(page)
    return parser.texts


def enroll_context(**extra) -> dict:
    return dict(notice=notice("zh-CN"), languages={"zh-CN": "中文", "en": "English"}, age_bands=["adult"],
                alternatives=["card"], may_enroll=True, may_override=True, max_images=10, max_image_mb=8.0,
                doors=[console_capture.DoorChoice("door-1", "lobby")], capture_timeout_s=60.0, values={}, **extra)


def test_every_enrollment_ending_reads_in_chinese():
    """Enrolled (where the face works: doors, central, nowhere), refused as a duplicate, failed
    with each photo's reasons and guidance, and a door that refused the capture."""
    data = {"door-1", "lobby", "a.jpg", "b.jpg", *(notice(language).version for language in NOTICE_LANGUAGES)}
    rejected = (Rejection("photo 1", "eyes_closed, blurred", "open your eyes; hold still"),)
    failed = EnrollmentOutcome(FAILED_TO_ENROL, rejected=rejected, attempts=1)
    endings = [dict(outcome=EnrollmentOutcome(ENROLLED, "s-1a2b3c4d", 2, rejected, usable_at=usable), enrolled=True,
                    feedback=console_enroll.photo_feedback(["a.jpg", "b.jpg"], failed), from_door=door)
               for usable, door in ((Usability.of(False, True, ("lobby",)), ""), (Usability.of(True, True), "door-1"),
                                    (Usability.of(True, False), ""), (Usability.of(False, False), ""),
                                    (Usability.of(True, True, has_template=False), ""))]
    endings.append(dict(outcome=EnrollmentOutcome(DUPLICATE, duplicate_of="Z**** S** (s-1a2b3c4d)"), duplicate=True,
                        feedback=[]))
    endings.append(dict(outcome=failed, feedback=console_enroll.photo_feedback(["a.jpg"], failed)))
    for status, guidance in ((BUSY, api_capture.DOOR_REFUSALS[BUSY][3]), (api_capture.NO_ANSWER,
                                                                           api_capture.NO_ANSWER_GUIDANCE)):
        endings.append(dict(capture_refusal=console_capture.refusal_of({
            "error": {"name": "MESSAGE_REJECTED", "title": ErrorCode.MESSAGE_REJECTED.title, "detail": "door-1"},
            "device": "door-1", "device_status": status, "guidance": guidance})))
    for ending in endings:
        texts = rendered_texts("enroll.html", **enroll_context(**ending))
        assert english_left(texts, data) == [], ending
    failed_page = " ".join(rendered_texts("enroll.html", **enroll_context(outcome=failed, feedback=[
        *console_enroll.photo_feedback(["a.jpg"], failed)])))
    assert "闭眼、模糊" in failed_page and "请睁开眼睛" in failed_page  # reasons here, guidance from the door's catalog


def test_receipts_secrets_and_verdicts_read_in_chinese():
    receipt = {"receipt_id": "r-1a2b3c4d", "subject_id": "s-1a2b3c4d", "reason": "request", "deleted_at": "2026-12-01",
               "node": "node-1", "actor": "sec-1", "erased": [], "tombstone_revision": 7, "signature": "ab12",
               "json": "{}"}
    revealed = {"subject_id": "s-1a2b3c4d", "name": "Zhang San", "card_no": "C-1", "phone": "13800000000"}
    people = [{"name": "Z**** S**", "subject_id": "s-1a2b3c4d", "age_band": "adult", "alternative": "card_and_pin",
               "card_no": "", "staff_no": "", "templates": 1, "groups": [], "usable_at": usable.as_dict()}
              for usable in (Usability.of(False, True), Usability.of(True, True), Usability.of(False, False))]
    page = rendered_texts("people.html", receipt=receipt, receipt_valid=True, revealed=revealed, people=people,
                          total=3, query="Zhang", offset=0, previous=None, following=3, may_delete=True,
                          may_reveal=True, may_set_groups=False, may_withdraw=False)
    assert english_left(page, {"sec-1", "node-1"}) == []
    verdict = {"ok": False, "first_bad": 4, "reason": "hash mismatch", "entries": 9, "head_time": 0}
    assert english_left(rendered_texts("audit.html", may_verify=True, verdict=verdict, may_read=False), set()) == []
    account = SimpleNamespace(name="op-1", role=Role.OPERATOR, disabled=False, locked_until=time.time() + 60,
                              failures=5)
    token = SimpleNamespace(token_id="0a1b2c3d4e", token="apt_0a1b2c3d4e", account="op-1", scopes=["events:read"],
                            label="", expires_at=time.time() + 86400, last_used=0, revoked=False)
    page = rendered_texts("accounts.html", accounts=[account], tokens=[token], roles=[r.value for r in Role],
                          scopes=["events:read"], max_days=365, default_days=30, max_label=64, new_token=token,
                          token_account="op-1", revoked_token="0a1b2c3d4e", problem="")
    assert english_left(page, {"op-1"}) == []
    revoked = {"name": "door-1", "detail": "broker restarted"}
    assert english_left(rendered_texts("doors.html", revoked=revoked, devices=[], online_window_s=600.0,
                                       refresh_s=10), {"door-1"}) == []


# -- which language a request gets -----------------------------------------------------------
@pytest.fixture
def console(tmp_path):
    config = api_config()
    login_session(tmp_path, Role.AUDITOR, config)  # the folder's keys and first accounts, before the app opens it
    with running(tmp_path, config) as client:
        yield client


def html_lang(html: str) -> str:
    return re.search(r'<html lang="([^"]+)">', html).group(1)


def test_english_is_the_default_then_accept_language_then_the_switch(console):
    english = console.get("/login").text
    assert html_lang(english) == "en" and "<h1>Log in</h1>" in english
    chinese = console.get("/login", headers={"Accept-Language": "fr;q=1, zh-CN;q=0.8, en;q=0.5"}).text
    assert html_lang(chinese) == "zh-CN" and "<h1>登录</h1>" in chinese
    assert html_lang(console.get("/login", headers={"Accept-Language": "zh;q=0.4, en-GB;q=0.9"}).text) == "en"

    switched = console.get("/language/zh_CN", params={"to": "/login?ended=1"}, follow_redirects=False)
    assert switched.status_code == SEE_OTHER and switched.headers["location"] == "/login?ended=1"
    cookie = switched.headers["set-cookie"]
    assert cookie.startswith(f"{console_i18n.LANG_COOKIE}=zh_CN") and "Secure" in cookie and "HttpOnly" in cookie
    page = console.get("/login?ended=1", headers={"Accept-Language": "en"}).text  # the switch beats the browser
    assert html_lang(page) == "zh-CN" and "您的会话已结束" in page
    assert 'href="/language/en?to=/login%3Fended%3D1"' in page  # back to English, to this page


def test_the_switch_only_goes_back_to_this_site(console):
    for target in ("//evil.example/x", "https://evil.example/", "/\\evil.example", "people"):
        answer = console.get("/language/en", params={"to": target}, follow_redirects=False)
        assert answer.headers["location"] == "/", target
    unknown = console.get("/language/xx", params={"to": "/login"}, follow_redirects=False)
    assert unknown.headers["set-cookie"].startswith(f"{console_i18n.LANG_COOKIE}=en")  # the page's language kept


def test_the_site_default_applies_when_the_browser_says_nothing(tmp_path):
    config = api_config(language="zh_CN")
    login_session(tmp_path, Role.AUDITOR, config)
    with running(tmp_path, config) as client:
        assert html_lang(client.get("/login").text) == "zh-CN"
        assert html_lang(client.get("/login", headers={"Accept-Language": "en-US"}).text) == "en"


def test_refusals_read_in_the_page_language_and_the_api_stays_english(console, tmp_path):
    client = console
    client.cookies.set(console_i18n.LANG_COOKIE, "zh_CN")
    refused = client.post("/login", data={"account": "nobody", "password": "x", "code": "123456", "csrf": "stale"})
    assert "登录表单已过期" in refused.text  # the form's own token is missing
    api = client.get("/api/people")
    assert api.status_code == 401 and api.json()["error"]["title"] == ErrorCode.AUTH_REQUIRED.title


# -- every page in Chinese, in the browser ---------------------------------------------------
@pytest.fixture(scope="module")
def site(tmp_path_factory, console_kit):
    """The console over a folder with doors, events, people, a token and the first accounts."""
    folder = tmp_path_factory.mktemp("console-i18n")
    config = api_config()
    pki = provision_devices(folder)
    login_session(folder, Role.OPERATOR, config)  # the keys and first accounts, before the app opens them
    token_holder = make_token(folder, Role.OPERATOR, config=config)
    app = create_app(config, folder)
    with console_kit.serving(app, folder, pki) as url:
        services = app.state.services
        desk = Principal("desk-1", Role.OPERATOR)
        with services.stores():
            for name in PEOPLE:
                services.data.register_person(desk, Person(new_subject_id(), name, AgeBand.ADULT, Alternative.CARD))
            services.sync.record_events([door_event("e-1", "door-1", "accepted", time.time() - 60),
                                         door_event("e-2", "door-2", "rejected", time.time() - 30)], time.time())
        with console_kit.launched_chromium(console_kit.spki_pin(pki.ca_cert.read_bytes())) as browser:
            yield browser, url, folder, config, token_holder


def readable(page) -> list[str]:
    return page.evaluate(READABLE)


def english_left(texts: list[str], data: set[str]) -> list[str]:
    """What is left of ``texts`` once the zh_CN catalog's wording and the data are taken out."""
    wording = set()
    for message in read_catalog("zh_CN", console_i18n.DOMAIN):
        for text in (message.string if isinstance(message.string, tuple) else (message.string,)):
            wording.update(part.strip() for part in PLACEHOLDER.split(text or "") if part.strip())
    removable = sorted(wording | {d for d in data if d}, key=len, reverse=True)
    left = []
    for text in texts:
        for part in removable:
            text = text.replace(part, " ")
        text = DATA.sub(" ", text)
        if ENGLISH_WORD.search(text):
            left.append(text.strip())
    return left


def check_chinese(page, name: str, data: set[str]) -> None:
    assert page.evaluate("document.documentElement.lang") == "zh-CN", name
    page.wait_for_timeout(200)  # the page's scripts (live state, refresh stamps) have run
    REPORTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(REPORTS / f"zh_CN-{name}.png"), full_page=True)
    assert english_left(readable(page), data) == [], name


def log_in(page, account: tuple[str, str, str]) -> None:
    name, password, secret = account
    page.fill("input[name=account]", name)
    page.fill("input[name=password]", password)
    page.fill("input[name=code]", totp.totp(secret))
    page.click("button[type=submit]")
    page.wait_for_selector("#role-badge")


def test_every_page_reads_in_chinese_after_the_switch(site):
    browser, url, folder, config, _ = site
    admin = login_session(folder, Role.SECURITY_ADMIN, config)
    auditor = login_session(folder, Role.AUDITOR, config)
    data = {admin[0], auditor[0], "door-1", "door-2", "lobby", "lab", "verify", "identify",
            *(notice(language).version for language in NOTICE_LANGUAGES)}
    context = browser.new_context(base_url=url, locale="en-US", viewport={"width": 1280, "height": 860})
    context.set_default_timeout(PAGE_TIMEOUT_MS)
    page = context.new_page()
    page.on("dialog", lambda dialog: dialog.accept())
    page.goto("/login")
    assert page.evaluate("document.documentElement.lang") == "en"  # the browser asked for English
    page.click("#language-switch a[lang=zh-CN]")
    page.wait_for_selector("h1:text('登录')")
    page.fill("input[name=account]", admin[0])
    page.fill("input[name=password]", "not the password")
    page.fill("input[name=code]", "000000")
    page.click("button[type=submit]")
    assert "账号、密码或验证码错误" in page.inner_text("#login-refused")
    check_chinese(page, "login", data)

    log_in(page, admin)
    assert page.inner_text("#role-badge") == "安全管理员"
    assert [t.strip() for t in page.locator("header nav a").all_inner_texts()] == \
        ["人员", "注册", "门", "事件", "门禁规则", "审计", "账号"]
    for path, name in (("/people", "people"), ("/enroll", "enroll"), ("/doors", "doors"),
                       ("/access", "access-no-group"), ("/events", "events"),
                       ("/audit", "audit"), ("/accounts", "accounts")):
        page.goto(path)
        if name == "events":
            page.wait_for_selector("#live-state.on")  # the stream opened: its words come from the page
        check_chinese(page, name, data)

    page.fill("form[action='/accounts'] input[name=name]", "desk-2")
    page.fill("form[action='/accounts'] input[name=password]", "Zq8!vL3#tR6^wN1&")
    page.click("form[action='/accounts'] button[type=submit]")
    page.wait_for_selector("#new-account")
    check_chinese(page, "accounts-created", data | {"desk-2"})
    page.goto("/audit")
    page.click("form[action='/audit/verify'] button[type=submit]")
    assert page.inner_text("#verdict").startswith("完整")
    check_chinese(page, "audit-verified", data)
    page.click("#language-switch a[lang=en]")  # and back: the same page in English
    page.wait_for_selector("h1:text('Audit log')")
    context.close()

    context = browser.new_context(base_url=url, locale="zh-CN", viewport={"width": 1280, "height": 860})
    context.set_default_timeout(PAGE_TIMEOUT_MS)
    page = context.new_page()
    page.goto("/login")  # Accept-Language zh-CN: Chinese without the switch
    log_in(page, auditor)
    page.goto("/audit")
    assert page.locator("#audit tbody tr").count() > 0
    check_chinese(page, "audit-entries", data)
    page.goto("/accounts")  # not the auditor's: the problem page
    assert "权限不足" in page.inner_text("#problem-text")
    check_chinese(page, "problem", data)
    context.close()
