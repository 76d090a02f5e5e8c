"""The console's language: which one a request gets, the templates in it, and the words the
pages show for the product's own values (roles, age bands, outcomes ...).

The language is the ``appliance_lang`` cookie, set by the 中文 / English switch in the page
header (``/language/{code}``), else the browser's Accept-Language, else ``[console] language``.
The catalogs are the ``console`` domain of ``appliance.i18n`` (zh_CN and en; the msgid is the
English text, so a gap shows English rather than failing).

Why one Jinja2 environment per language, each with its catalog installed once: the
environment's ``gettext`` is a global, so installing a request's translations into a shared
environment would race with a request in the other language on another worker thread.
Two environments built once and never changed afterwards need no lock while rendering.
Strings in Python are marked ``N_`` (extracted by Babel, translated when shown) or translated
at once with ``say``; REST answers stay English (``appliance/web/api_*``).
"""
from __future__ import annotations

import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jinja2
from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from appliance.i18n import normalise_language, translations
from appliance.web.auth import services_of

DOMAIN = "console"
DOOR_DOMAIN = "door"  # the kiosk's catalog: the guidance a door gives a person
LANG_COOKIE = "appliance_lang"
LANG_COOKIE_AGE_S = 365 * 24 * 3600  # a preference of this browser, kept for a year
SWITCH_PATH = "/language"
SEE_OTHER = 303
TEMPLATE_DIR = Path(__file__).resolve().parent / "templates"
HTML_LANG = {"zh_CN": "zh-CN", "en": "en"}  # BCP 47 tags for <html lang>
SWITCH_LABELS = {"zh_CN": "中文", "en": "English"}  # each language named in itself
# how each language writes a time: English as the CSV export does, Chinese in CLDR's medium form
TIME_PATTERNS = {"en": "yyyy-MM-dd HH:mm:ss", "zh_CN": "medium"}
# how a list of reasons ("eyes closed, blurred") and of pieces of guidance ("open your eyes; hold
# still") are joined: the separators the enrollment desk writes, and each language's own
LIST_SEPARATORS = {"en": ", ", "zh_CN": "、"}
CLAUSE_SEPARATORS = {"en": "; ", "zh_CN": "；"}
_BUILD_LOCK = threading.Lock()
_TEMPLATES: dict[str, Jinja2Templates] = {}


def N_(message: str) -> str:
    """Marks ``message`` for the catalog; it is translated where it is shown."""
    return message


# the product's own values as people read them (the value itself stays in forms and classes)
VALUE_LABELS = {
    "system_administrator": N_("system administrator"), "security_administrator": N_("security administrator"),
    "auditor": N_("auditor"), "operator": N_("operator"),
    "under_14": N_("under 14"), "14_to_17": N_("14 to 17"), "adult": N_("adult"),
    "card": N_("card"), "pin": N_("PIN"), "card_and_pin": N_("card and PIN"),
    "accepted": N_("accepted"), "rejected": N_("rejected"), "unavailable": N_("unavailable"),
    "not_needed": N_("not needed"), "online": N_("online"), "offline": N_("offline"), "revoked": N_("revoked"),
    "active": N_("active"), "disabled": N_("disabled"), "never": N_("never"),
    "nowhere": N_("nowhere"), "doors": N_("doors"), "central": N_("central"),
    # an audit entry's result
    "ok": N_("ok"), "denied": N_("denied"), "failed": N_("failed"), "pass": N_("pass"), "fail": N_("fail"),
    "received": N_("received"),
    # a door log entry's type, and the kind every door reports (door I/O kinds are shown as recorded)
    "event": N_("event"), "alarm": N_("alarm"),
    # what a door answered to an enrollment capture (console_capture.CaptureRefusal.answered)
    "busy": N_("busy"), "refused": N_("refused"), "no_face": N_("no face"), "liveness_failed": N_("liveness failed"),
    "timeout": N_("timeout"), "nothing": N_("nothing"),
    # why a photo or capture was refused (vision.quality.RULES codes)
    "face_too_small": N_("face too small"), "head_turned": N_("head turned"), "head_tilted": N_("head tilted"),
    "head_rolled": N_("head rolled"), "eyes_closed": N_("eyes closed"), "face_cut_off": N_("face cut off"),
    "several_faces": N_("several faces"), "blurred": N_("blurred"), "too_dark": N_("too dark"),
    "too_bright": N_("too bright"), "low_contrast": N_("low contrast"), "badly_exposed": N_("badly exposed"),
    "low_utility": N_("low utility"),
}


def page_language(request: Request) -> str:
    """The request's language: the switch's cookie, the browser's Accept-Language, the site's."""
    cached = getattr(request.state, "language", None)
    if cached:
        return cached
    chosen = _known(request.cookies.get(LANG_COOKIE, "")) or _accepted(request.headers.get("accept-language", ""))
    request.state.language = chosen or services_of(request).config.console.language
    return request.state.language


def _known(tag: str) -> str | None:
    try:
        return normalise_language(tag) if tag else None
    except ValueError:
        return None


def _accepted(header: str) -> str | None:
    """The first language of an Accept-Language header (by q, then order) that has a catalog;
    a region without one falls back to its language ("zh-TW" reads zh_CN, "en-AU" en)."""
    ranked = []
    for order, part in enumerate(header.split(",")):
        tag, _, params = part.strip().partition(";")
        quality = 1.0
        if params.strip().startswith("q="):
            try:
                quality = float(params.strip()[2:])
            except ValueError:
                continue
        if quality > 0:  # q=0: "not this one"
            ranked.append((-quality, order, tag.strip()))
    for _, _, tag in sorted(ranked):
        found = _known(tag) or _known(tag.split("-")[0])
        if found:
            return found
    return None


def say(request: Request, message: str, **values: Any) -> str:
    """``message`` (an English msgid, ``%(name)s`` placeholders) in the request's language."""
    text = translations(page_language(request), DOMAIN).gettext(message)
    return text % values if values else text


def templates(language: str) -> Jinja2Templates:
    """The console's templates in ``language``, built on first use and never changed after."""
    with _BUILD_LOCK:
        if language not in _TEMPLATES:
            _TEMPLATES[language] = _build(language)
        return _TEMPLATES[language]


def _build(language: str) -> Jinja2Templates:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATE_DIR)), autoescape=True,
                             extensions=["jinja2.ext.i18n"])
    env.policies["ext.i18n.trimmed"] = True  # as babel.cfg extracts them: whitespace collapsed
    catalog = translations(language, DOMAIN)
    env.install_gettext_translations(catalog, newstyle=True)
    env.filters["when"] = lambda seconds, zone=True: when(language, seconds, zone)
    env.filters["label"] = lambda value: label(catalog, value)
    env.filters["reasons"] = lambda text: LIST_SEPARATORS[language].join(
        label(catalog, part) for part in str(text or "").split(LIST_SEPARATORS["en"]) if part)
    env.filters["translated"] = lambda text: translated(language, text)
    env.filters["number"] = lambda value: number(language, value)
    env.globals.update(html_lang=HTML_LANG[language], language=language, switch_labels=SWITCH_LABELS,
                       switch_path=SWITCH_PATH)
    return Jinja2Templates(env=env)


def label(catalog: Any, value: Any) -> str:
    """A product value (``security_administrator``) as people read it, in the catalog's language."""
    value = getattr(value, "value", value)
    text = VALUE_LABELS.get(str(value).replace(" ", "_"))
    return catalog.gettext(text) if text else str(value).replace("_", " ")


def translated(language: str, text: str) -> str:
    """A text another layer wrote in English (a door's guidance, a rejection's reason): the
    console's catalog, else the door's (the kiosk's), else the text as written."""
    if not text:
        return text
    for domain in (DOMAIN, DOOR_DOMAIN):
        found = translations(language, domain).gettext(text)
        if found != text:
            return found
    pieces = text.split(CLAUSE_SEPARATORS["en"])  # a desk's guidance: each issue's advice, joined
    if len(pieces) > 1:
        return CLAUSE_SEPARATORS[language].join(translated(language, piece) for piece in pieces)
    return text


def when(language: str, seconds: float | None, zone: bool = True) -> str:
    """A Unix time in UTC as ``language`` writes it (Babel); "never" for none."""
    from babel.dates import format_datetime

    if not seconds:
        return translations(language, DOMAIN).gettext(VALUE_LABELS["never"])
    moment = datetime.fromtimestamp(seconds, timezone.utc)
    text = format_datetime(moment, TIME_PATTERNS[language], tzinfo=timezone.utc, locale=language)
    return f"{text} UTC" if zone else text


def number(language: str, value: float) -> str:
    """A count or size as ``language`` writes it (grouping, decimal sign)."""
    from babel.numbers import format_decimal

    return format_decimal(value, locale=language)


router = APIRouter()


@router.get(SWITCH_PATH + "/{code}", include_in_schema=False)
def switch_language(request: Request, code: str, to: str = "/") -> Response:
    """Remember ``code`` in this browser and go back to ``to`` (a path of this site only)."""
    language = _known(code) or page_language(request)
    target = urlsplit(to)
    if target.scheme or target.netloc or not to.startswith("/") or to.startswith("//") or "\\" in to:
        to = "/"
    response = RedirectResponse(to, status_code=SEE_OTHER)
    response.set_cookie(LANG_COOKIE, language, max_age=LANG_COOKIE_AGE_S, httponly=True, secure=True,
                        samesite="strict", path="/")
    return response


