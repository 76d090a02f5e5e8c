"""``appliance`` command: parser, quiet native libraries, one-line errors, exit codes.

Exit status: 0 success (``compare``: same person; ``quality``: accepted), 1 a negative
verdict (different person, quality rejected), other values from the error table in
``appliance.errors``; 70 an internal error (run with ``--debug`` for the traceback).
"""
from __future__ import annotations

import argparse
import logging
import os
import sys

INTERNAL_ERROR = 70


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
    from appliance.cli import (bench_commands, commands, demo_commands, eval_commands, liveness_commands,
                               ops_commands, security_commands, service_commands)

    parser = argparse.ArgumentParser(prog="appliance", description="Face-recognition access appliance")
    parser.add_argument("--version", action="version", version=f"appliance {__version__}")
    parser.set_defaults(config=None, debug=False)
    # the global options are accepted before or after the command
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", default=argparse.SUPPRESS,
                        help="configuration file (default: $APPLIANCE_CONFIG or config/appliance.toml)")
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                        help="show scores, tracebacks and debug logs")
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
    liveness_commands.register(sub)
    service_commands.register(sub)
    return parser


def _with_parent(add_parser, common: argparse.ArgumentParser):
    def add(name: str, **kwargs):
        child = add_parser(name, parents=[common], **kwargs)
        if "help" in kwargs:
            child.description = kwargs["help"]
        return child

    return add


def main(argv: list[str] | None = None) -> int:
    _native_library_settings()
    from appliance.errors import ApplianceError

    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if args.debug:
        logging.getLogger("appliance").setLevel(logging.DEBUG)
    try:
        return int(args.handler(args) or 0)
    except ApplianceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.code.exit_status
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    except Exception as exc:  # noqa: BLE001 - the CLI's last line of defence
        if args.debug:
            raise
        print(f"internal error: {type(exc).__name__}: {exc} (run with --debug for details)", file=sys.stderr)
        return INTERNAL_ERROR


if __name__ == "__main__":
    sys.exit(main())
