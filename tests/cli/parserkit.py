"""Every parser and argument of the command line, for the tests that check them all."""
from __future__ import annotations

import argparse
from collections.abc import Iterator

from appliance.cli.main import build_parser


def parsers(parser: argparse.ArgumentParser | None = None,
            path: tuple[str, ...] = ()) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    """Every parser of the command line, with the command that reaches it (``eval identification``)."""
    parser = parser or build_parser()
    yield " ".join(path), parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                yield from parsers(child, (*path, name))


def arguments() -> Iterator[tuple[str, argparse.Action]]:
    """Every argument (not the sub-command choosers, nor -h), with its command."""
    for command, parser in parsers():
        for action in parser._actions:
            if not isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
                yield command, action
