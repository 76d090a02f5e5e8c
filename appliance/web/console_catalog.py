"""The console domain's message ids, and the catalogs brought up to date with them.

Babel's extractors (``babel.cfg`` beside this file) find what the templates and ``console*.py``
mark: ``_()``, ``{% trans %}``, ``N_`` and ``say``. A few texts the console shows were written
in English by other layers and are looked up by their text (``_(usable.reason)``,
``|translated``): error titles, where a face works, a door capture's guidance. They are listed
here from their source, so a changed text there shows up as a missing translation in
``tests/web/test_console_i18n.py`` instead of silently falling back to English.

``python -m appliance.web.console_catalog`` rewrites both ``console.po`` files with every msgid,
keeping each translation already made (English: the msgid itself) and printing what zh_CN lacks.
"""
from __future__ import annotations

from pathlib import Path

from babel.messages.catalog import Catalog
from babel.messages.extract import DEFAULT_KEYWORDS, extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.pofile import write_po

from appliance.i18n import LANGUAGES, catalog_path, read_catalog

HERE = Path(__file__).resolve().parent
MAPPING = HERE / "babel.cfg"
DOMAIN = "console"
KEYWORDS = {**DEFAULT_KEYWORDS, "say": (2,)}  # console_i18n.say(request, message, **values)
SOURCE_LANGUAGE = "en"
PO_WIDTH = 100


def extracted() -> dict[str | tuple[str, str], list[tuple[str, int]]]:
    """Every msgid the templates and console modules mark, with where it is used."""
    with MAPPING.open(encoding="utf-8") as mapping:
        method_map, options_map = parse_mapping_cfg(mapping)
    found: dict[str | tuple[str, str], list[tuple[str, int]]] = {}
    for file_name, line, message, _comments, _context in extract_from_dir(
            str(HERE), method_map, options_map, keywords=KEYWORDS, strip_comment_tags=True):
        msgid = message if isinstance(message, str) else tuple(message[:2])
        if msgid:
            found.setdefault(msgid, []).append((file_name, line))
    return found


def unextracted() -> list[str]:
    """The texts of other layers the console looks up by their English text."""
    from appliance.errors import ErrorCode
    from appliance.matcher.enrollment_types import Usability
    from appliance.protocol.capture_messages import LIVENESS_FAILED_GUIDANCE
    from appliance.web import api_capture

    texts = [code.title for code in ErrorCode]
    for nowhere in (Usability.of(False, False), Usability.of(True, True, has_template=False)):
        texts += [nowhere.reason, nowhere.action]
    texts += [guidance for *_, guidance in api_capture.DOOR_REFUSALS.values()]
    texts += [api_capture.NO_ANSWER_GUIDANCE, api_capture.BROKER_REFUSED_GUIDANCE, LIVENESS_FAILED_GUIDANCE]
    return list(dict.fromkeys(texts))


def msgids() -> dict[str | tuple[str, str], list[tuple[str, int]]]:
    """Every msgid of the console domain (plural ones as (singular, plural))."""
    every = extracted()
    for text in unextracted():
        every.setdefault(text, [])
    return every


def updated(language: str) -> Catalog:
    """``language``'s catalog with exactly the current msgids, its translations kept."""
    old = read_catalog(language, DOMAIN)
    new = Catalog(locale=language, domain=DOMAIN, project="face-appliance", version="1",
                  copyright_holder="face-appliance contributors", fuzzy=False)
    for msgid, locations in msgids().items():
        kept = old.get(msgid)
        if language == SOURCE_LANGUAGE:
            string = msgid
        elif kept is not None and not kept.fuzzy:
            string = kept.string
        else:
            string = ("",) * new.num_plurals if isinstance(msgid, tuple) else ""
        new.add(msgid, string, locations=locations, flags={"python-format"} if "%(" in str(msgid) else ())
    return new


def write(language: str, catalog: Catalog) -> Path:
    path = catalog_path(language, DOMAIN)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as out:
        write_po(out, catalog, width=PO_WIDTH, sort_output=True, omit_header=False)
    return path


def main() -> None:
    for language in LANGUAGES:
        catalog = updated(language)
        path = write(language, catalog)
        missing = [m.id for m in catalog if m.id and not (all(m.string) if isinstance(m.id, tuple) else m.string)]
        print(f"{path}: {len(catalog)} messages, {len(missing)} without a translation")


if __name__ == "__main__":
    main()
