"""``appliance <command> --help`` explains every argument: what it means, its unit, its choices, its default."""
from __future__ import annotations

import argparse
from collections.abc import Iterator

from appliance.cli.main import build_parser


def _parsers(parser: argparse.ArgumentParser,
             path: tuple[str, ...] = ()) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    """Every parser of the command line, with the command that reaches it (``eval identification``)."""
    yield " ".join(path), parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                yield from _parsers(child, (*path, name))


def test_every_argument_has_help_text():
    missing = [f"{command or 'appliance'} {'/'.join(action.option_strings) or action.dest}"
               for command, parser in _parsers(build_parser()) for action in parser._actions
               if not isinstance(action, (argparse._HelpAction, argparse._SubParsersAction))
               and (not action.help or action.help == argparse.SUPPRESS)]
    assert not missing, f"{len(missing)} arguments without help text:\n" + "\n".join(missing)


def test_every_help_page_renders():
    # a stray '%' in a help text (one that is not '%%' or '%(default)s') fails only when --help is asked for
    for command, parser in _parsers(build_parser()):
        assert parser.format_help(), command


FLAGS = (argparse._StoreTrueAction, argparse._StoreFalseAction, argparse._StoreConstAction, argparse._CountAction,
         argparse._AppendConstAction, argparse._VersionAction)


def test_every_default_is_named_in_the_help():
    # a flag's default is its absence; None and "" mean "not given" (the handler says what then)
    unnamed = [f"{command or 'appliance'} {'/'.join(action.option_strings) or action.dest} = {action.default!r}"
               for command, parser in _parsers(build_parser()) for action in parser._actions
               if not isinstance(action, (argparse._HelpAction, argparse._SubParsersAction, *FLAGS))
               and action.default is not None and action.default is not argparse.SUPPRESS
               and action.default not in ("", []) and "default" not in (action.help or "")]
    assert not unnamed, f"{len(unnamed)} defaults the help does not name:\n" + "\n".join(unnamed)
