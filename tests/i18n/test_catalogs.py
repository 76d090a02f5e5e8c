"""The message catalogs: complete in every language, and holding every English string the door
can show (collected from the code, not from a list kept by hand beside it)."""
from __future__ import annotations

import ast
import inspect
import textwrap
from types import ModuleType

import pytest

from appliance import i18n
from appliance.edge import credential_pass, door_pass, enroll_capture, hardware
from appliance.liveness import challenge, grey_path
from appliance.protocol import capture_messages
from appliance.vision import quality

# modules whose module-level *_TEXT / *_GUIDANCE string constants are shown at the door
DOOR_TEXT_MODULES: tuple[ModuleType, ...] = (door_pass, credential_pass, hardware, enroll_capture,
                                              capture_messages, grey_path)
SHOWN_SUFFIXES = ("_TEXT", "_GUIDANCE")


def _shown_constants(module: ModuleType) -> set[str]:
    return {value for name, value in vars(module).items()
            if name.isupper() and name.endswith(SHOWN_SUFFIXES) and isinstance(value, str)}


def _returned_literals(function) -> set[str]:
    """String literals a function returns (``ActiveChallenge.guidance``'s fixed prompts)."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(function)))
    return {node.value.value for node in ast.walk(tree) if isinstance(node, ast.Return)
            and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)}


def door_strings() -> set[str]:
    """Every English string the door can show: quality guidance, challenge prompts, hardware,
    door pass and enrollment texts, and the screen model's own texts."""
    from appliance.edge.kiosk import screen

    found = {guidance for _, _, guidance, _, _ in quality.RULES}
    found |= {action.guidance for action in challenge.Action}
    found |= _returned_literals(challenge.ActiveChallenge.guidance)
    for module in DOOR_TEXT_MODULES + (screen,):
        found |= _shown_constants(module)
    found |= set(screen.SCREEN_TEXTS)
    return found


@pytest.mark.parametrize("domain", i18n.DOMAINS)
def test_no_translation_is_missing(domain):
    missing = i18n.missing_translations(domain)
    assert set(missing) == set(i18n.LANGUAGES)
    assert not any(missing.values()), f"untranslated or fuzzy msgids in the {domain!r} catalogs: {missing}"


def test_every_string_the_door_shows_is_in_the_door_catalog():
    catalog = {m.id for m in i18n.read_catalog("en", "door") if m.id}
    shown = door_strings()
    assert len(shown) > 30, "the collection found too few strings: a source moved?"
    absent = sorted(shown - catalog)
    assert not absent, f"door strings without a msgid in appliance/i18n/locale/*/LC_MESSAGES/door.po: {absent}"


def test_the_door_speaks_both_languages():
    assert i18n.gettext("zh_CN", "door", "Blink both eyes") == "请眨眼"
    assert i18n.gettext("en", "door", "Blink both eyes") == "Please blink"
    assert i18n.gettext("zh-CN", "door", "move closer") == "请靠近一点"
    assert i18n.gettext("en", "door", "No such message") == "No such message"  # the English msgid, never a gap


@pytest.mark.parametrize(("tag", "expected"), [("zh-CN", "zh_CN"), ("zh", "zh_CN"), ("zh_Hans", "zh_CN"),
                                               ("ZH-hans-CN", "zh_CN"), ("en", "en"), ("en-GB", "en")])
def test_language_tags_are_normalised(tag, expected):
    assert i18n.normalise_language(tag) == expected


def test_an_unknown_language_says_which_there_are():
    with pytest.raises(ValueError, match="fr.*zh_CN, en"):
        i18n.normalise_language("fr")


def test_a_fuzzy_or_empty_entry_counts_as_missing(tmp_path, monkeypatch):
    for lang, body in (("zh_CN", '#, fuzzy\nmsgid "Hello"\nmsgstr "你好"\n\nmsgid "Bye"\nmsgstr ""\n'),
                       ("en", 'msgid "Hello"\nmsgstr "Hello"\n\nmsgid "Bye"\nmsgstr "Bye"\n\nmsgid "Only here"\n'
                              'msgstr "Only here"\n')):
        folder = tmp_path / lang / "LC_MESSAGES"
        folder.mkdir(parents=True)
        (folder / "door.po").write_text(body, encoding="utf-8")
    monkeypatch.setattr(i18n, "LOCALE_DIR", tmp_path)
    assert i18n.missing_translations("door") == {"zh_CN": ["Bye", "Hello", "Only here"], "en": []}


def test_the_door_notice_exists_in_every_language_with_one_version():
    """The privacy notice at the point of collection is data (config/notices/face-door.*.txt),
    not catalog text: every screen language has it, all at the same version."""
    from appliance.edge.kiosk.server import door_notice

    notices = [door_notice(lang) for lang in i18n.LANGUAGES]
    assert len({n.version for n in notices}) == 1 and all(n.text.strip() for n in notices)
