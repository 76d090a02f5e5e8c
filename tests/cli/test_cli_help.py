"""``appliance <command> --help`` explains every argument: what it means, its unit, its choices, its default."""
from __future__ import annotations

import argparse

from parserkit import arguments, parsers


def test_every_argument_has_help_text():
    missing = [f"{command or 'appliance'} {'/'.join(action.option_strings) or action.dest}"
               for command, action in arguments() if not action.help or action.help == argparse.SUPPRESS]
    assert not missing, f"{len(missing)} arguments without help text:\n" + "\n".join(missing)


def test_every_help_page_renders():
    # a stray '%' in a help text (one that is not '%%' or '%(default)s') fails only when --help is asked for
    for command, parser in parsers():
        assert parser.format_help(), command


FLAGS = (argparse._StoreTrueAction, argparse._StoreFalseAction, argparse._StoreConstAction, argparse._CountAction,
         argparse._AppendConstAction, argparse._VersionAction)


def test_every_default_is_named_in_the_help():
    # a flag's default is its absence; None and "" mean "not given" (the handler says what then)
    unnamed = [f"{command or 'appliance'} {'/'.join(action.option_strings) or action.dest} = {action.default!r}"
               for command, action in arguments()
               if not isinstance(action, FLAGS) and action.default is not None
               and action.default is not argparse.SUPPRESS and action.default not in ("", [])
               and "default" not in (action.help or "")]
    assert not unnamed, f"{len(unnamed)} defaults the help does not name:\n" + "\n".join(unnamed)
