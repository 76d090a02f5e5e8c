"""``appliance`` command: parser, quiet native libraries, one-line errors, exit codes.

Exit status: 0 success (``compare``: same person; ``quality``: accepted), 1 a negative
verdict (different person, quality rejected), other values from the error table in
``appliance.errors``; 70 an internal error (run with ``--debug`` for the traceback).

Logging: a masked stderr handler is installed before anything else runs; once the command is
known, ``appliance.ops.logs.configure_logging`` applies ``[ops]`` (file, format, level); the
commands in ``SERVICE_COMMANDS`` default to JSON lines (rule: ``docs/operations.md``, Logging).
"""
from __future__ import annotations

import argparse
import logging
import os
import sys

INTERNAL_ERROR = 70
# long-running or unattended commands: they log JSON lines unless ops.log_format says otherwise;
# everything else is an interactive command (text on stderr unless ops.log_file is set)
SERVICE_COMMANDS = frozenset({"matcher", "edge", "maintenance", "provision broker-config", "console"})
# commands that must work before any configuration exists (they create or locate it)
CONFIG_FREE_COMMANDS = frozenset({"config init", "config path"})
# optional dependencies (ImportError anywhere) -> the setup.cfg extra that installs them
OPTIONAL_EXTRAS = {"matplotlib": "plots", "picamera2": "pi", "gpiozero": "gpio", "dlib": "dlib", "faiss": "dev"}


def _native_library_settings() -> None:
    # MediaPipe (glog/absl), TensorFlow Lite and OpenCV write to stderr from C++;
    # these must be set before the libraries are imported.
    os.environ.setdefault("GLOG_minloglevel", "2")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")
    # One OpenBLAS thread: the gallery's matrix-vector search is memory-bound, and on these
    # 2-CPU machines a second BLAS thread made every small product wait ~8 ms for its wake-up
    # (measured: 1k x 512 search 0.04 ms with one thread, 8 ms with two). Must precede numpy.
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")


def build_parser() -> argparse.ArgumentParser:
    from appliance import __version__
    from appliance.cli import (account_commands, bench_commands, commands, compliance_commands, console_commands,
                               demo_commands, enroll_commands, eval_commands, liveness_commands, ops_commands,
                               security_commands, service_commands, site_commands)
    from appliance.cli import credential_commands
    from appliance.cli import access_commands
    from appliance.cli import publish_commands

    parser = argparse.ArgumentParser(prog="appliance", description="Face-recognition access appliance")
    parser.add_argument("--version", action="version", version=f"appliance {__version__}")
    parser.set_defaults(config=None, debug=False, token=None)
    # the global options are accepted before or after the command
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", default=argparse.SUPPRESS,
                        help="configuration file (default: $APPLIANCE_CONFIG or config/appliance.toml)")
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                        help="show scores, tracebacks and debug logs")
    common.add_argument("--token", default=argparse.SUPPRESS, metavar="TOKEN",
                        help="act as the account of this API token (default: $APPLIANCE_TOKEN, the file "
                             "$APPLIANCE_TOKEN_FILE, then the session of 'appliance login'); a command line is "
                             "visible to other local users, so prefer the file")
    for action in common._actions:
        parser._add_action(action)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    sub.add_parser = _with_parent(sub.add_parser, common)
    commands.register(sub)
    eval_commands.register(sub)
    bench_commands.register(sub)
    demo_commands.register(sub)
    security_commands.register(sub)
    ops_commands.register(sub)
    account_commands.register(sub)
    enroll_commands.register(sub)
    credential_commands.register(sub)
    liveness_commands.register(sub)
    service_commands.register(sub)
    console_commands.register(sub)
    site_commands.register(sub)
    access_commands.register(sub)
    compliance_commands.register(sub)
    publish_commands.register(sub)
    return parser


def _with_parent(add_parser, common: argparse.ArgumentParser):
    def add(name: str, **kwargs):
        child = add_parser(name, parents=[common], **kwargs)
        if "help" in kwargs:
            child.description = kwargs["help"]
        return child

    return add


def service_name(args: argparse.Namespace) -> str | None:
    """``appliance-<name>`` of a service command (its systemd unit's name), else None."""
    for name in (args.command, f"{args.command} {getattr(args, 'what', '')}"):
        if name in SERVICE_COMMANDS:
            return "appliance-" + name.split()[-1]
    return None


def _configure_logging(args: argparse.Namespace) -> bool:
    """Apply ``[ops]`` logging for this command; True when the logs go to ``ops.log_file``.
    A configuration that cannot be loaded raises its error (the masked stderr handler stays)."""
    from appliance.cli.common import config_from
    from appliance.ops.logs import CLI_LEVEL, configure_logging

    if f"{args.command} {getattr(args, 'action', '')}" in CONFIG_FREE_COMMANDS:
        return False  # the masked stderr handler of main() stays
    ops = config_from(args).ops
    service = service_name(args)
    configure_logging(ops, CLI_LEVEL, service=service or f"appliance {args.command}", interactive=service is None,
                      debug=args.debug)
    return bool(ops.log_file)


def _missing_extra(exc: BaseException):
    """The clear error for an optional dependency that is not installed, else None."""
    from appliance.errors import ApplianceError, ErrorCode

    if not isinstance(exc, ImportError) or not exc.name:
        return None
    module = exc.name.split(".")[0]
    if module not in OPTIONAL_EXTRAS:
        return None
    return ApplianceError(ErrorCode.DEPENDENCY_MISSING,
                          f"{module} is not installed: pip install 'face-appliance[{OPTIONAL_EXTRAS[module]}]'")


def main(argv: list[str] | None = None) -> int:
    _native_library_settings()
    from appliance.config import OpsConfig
    from appliance.errors import ApplianceError
    from appliance.ops.logs import CLI_LEVEL, configure_logging

    # masked from the first line on, even if the configuration turns out to be unreadable
    debug = "--debug" in (sys.argv[1:] if argv is None else argv)
    configure_logging(OpsConfig(), CLI_LEVEL, interactive=True, debug=debug)
    parser = build_parser()
    args = parser.parse_args(argv)
    to_file = False
    log = logging.getLogger("appliance.cli")
    try:
        to_file = _configure_logging(args)
        return int(args.handler(args) or 0)
    except ApplianceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        if to_file:  # the terminal or journal has the line above; the log file gets it too
            log.error("%s", exc)
        return exc.code.exit_status
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    except Exception as exc:  # noqa: BLE001 - the CLI's last line of defence
        missing = _missing_extra(exc)
        if missing is not None:
            print(f"error: {missing}", file=sys.stderr)
            if to_file:
                log.error("%s", missing)
            return missing.code.exit_status
        if to_file:
            log.error("internal error", exc_info=True)
        if args.debug:
            raise
        print(f"internal error: {type(exc).__name__}: {exc} (run with --debug for details)", file=sys.stderr)
        return INTERNAL_ERROR


if __name__ == "__main__":
    sys.exit(main())
