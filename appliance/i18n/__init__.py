"""Message catalogs: every string a person reads at the door or in the console, in zh_CN and en.

The catalogs are gettext ``.po`` sources under ``appliance/i18n/locale/<lang>/LC_MESSAGES/<domain>.po``
(managed with Babel: ``babel.cfg`` beside this file; see ``docs/kiosk.md``). No compiled ``.mo`` file is
kept in the repository: a catalog is compiled in memory the first time it is asked for (Babel's
``read_po`` + ``write_mo``) and cached per (language, domain). The msgid is the English source string
the code already uses (quality guidance, challenge prompts, results), so a string that lacks a
translation still shows in English instead of failing at the door; ``missing_translations`` and
``tests/i18n`` make such a gap fail the build.

Domains: ``door`` (the kiosk screen: guidance, challenge prompts, results, notice, the alternative)
and ``console`` (the web console's templates).
"""
from __future__ import annotations

import functools
import gettext as _gettext
import io
from pathlib import Path

LANGUAGES: tuple[str, ...] = ("zh_CN", "en")
DOMAINS: tuple[str, ...] = ("door", "console")
LOCALE_DIR = Path(__file__).resolve().parent / "locale"

# tags people and browsers write for the languages above (compared lower-case, "-" read as "_")
_ALIASES = {
    "zh_cn": "zh_CN", "zh": "zh_CN", "zh_hans": "zh_CN", "zh_hans_cn": "zh_CN", "zh_sg": "zh_CN",
    "en": "en", "en_us": "en", "en_gb": "en",
}


def normalise_language(tag: str) -> str:
    """``"zh-CN"``, ``"zh"``, ``"zh_Hans"`` -> ``"zh_CN"``; ``"en-GB"`` -> ``"en"``. ValueError for a
    language without a catalog, naming the ones there are."""
    key = str(tag).strip().replace("-", "_").lower()
    if key in _ALIASES:
        return _ALIASES[key]
    raise ValueError(f"no message catalog for language {tag!r}; available: {', '.join(LANGUAGES)} "
                     f"(also written zh-CN, zh, zh_Hans, en-US, en-GB)")


def catalog_path(lang: str, domain: str) -> Path:
    """The ``.po`` source of one catalog (it may not exist yet for a new domain)."""
    if domain not in DOMAINS:
        raise ValueError(f"unknown message domain {domain!r}; domains: {', '.join(DOMAINS)}")
    return LOCALE_DIR / normalise_language(lang) / "LC_MESSAGES" / f"{domain}.po"


def read_catalog(lang: str, domain: str):
    """The parsed ``.po`` source (a ``babel.messages.Catalog``); an empty one when there is none."""
    from babel.messages.catalog import Catalog
    from babel.messages.pofile import read_po

    path = catalog_path(lang, domain)
    if not path.is_file():
        return Catalog(locale=normalise_language(lang), domain=domain)
    with path.open("rb") as source:
        return read_po(source, locale=normalise_language(lang), domain=domain)


@functools.lru_cache(maxsize=None)
def translations(lang: str, domain: str) -> _gettext.NullTranslations:
    """The compiled catalog for ``lang`` and ``domain``, compiled in memory once per process.
    Fuzzy entries are left out (Babel's default), so they fall back to the English msgid."""
    from babel.messages.mofile import write_mo

    catalog = read_catalog(lang, domain)
    if not len(catalog):
        return _gettext.NullTranslations()
    compiled = io.BytesIO()
    write_mo(compiled, catalog)
    compiled.seek(0)
    return _gettext.GNUTranslations(compiled)


def gettext(lang: str, domain: str, message: str) -> str:
    """``message`` (an English msgid) in ``lang``; the msgid itself when the catalog lacks it."""
    return translations(normalise_language(lang), domain).gettext(message)


def missing_translations(domain: str) -> dict[str, list[str]]:
    """Per language, the msgids of ``domain`` whose msgstr is empty or fuzzy, and those present in
    another language's catalog but absent from this one (every language must carry every msgid)."""
    catalogs = {lang: read_catalog(lang, domain) for lang in LANGUAGES}
    every = {m.id for c in catalogs.values() for m in c if m.id}
    missing: dict[str, list[str]] = {}
    for lang, catalog in catalogs.items():
        found = {m.id: m for m in catalog if m.id}
        gaps = [i for i in every if i not in found or not found[i].string or found[i].fuzzy]
        missing[lang] = sorted(str(i) for i in gaps)
    return missing
