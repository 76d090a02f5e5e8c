"""Every ``appliance`` command builds the whole parser first: it must not load the heavy stack.

The parser's modules import OpenCV, numpy, the stores or the models only inside the commands
that use them, so ``appliance admin list`` or ``--help`` does not pay for the face pipeline
(~1.1 s of CPU per command here before, ~0.5 s after; several times that on a Pi)."""
from __future__ import annotations

import argparse
import json
import subprocess
import sys

import pytest

from appliance.bench import pipeline_bench, search_bench
from appliance.cli.main import build_parser
from appliance.evaluation import transaction

# what the parser alone must not import: each is loaded by the commands that need it
HEAVY = ("cv2", "numpy", "mediapipe", "onnxruntime", "ai_edge_litert", "matplotlib", "faiss", "sqlcipher3",
         "cryptography", "paho", "tqdm", "fastapi", "uvicorn")
PROBE = """
import json, sys
from appliance.cli.main import _native_library_settings, build_parser
_native_library_settings()
build_parser()
print(json.dumps(sorted({name.split('.')[0] for name in sys.modules})))
"""


def test_building_the_parser_loads_none_of_the_heavy_stack():
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True, timeout=60)
    loaded = set(json.loads(out.stdout))
    assert loaded.isdisjoint(HEAVY), sorted(loaded & set(HEAVY))


def _option(*path: str, dest: str) -> argparse.Action:
    parser = build_parser()
    for name in path:
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        parser = sub.choices[name]
    return next(a for a in parser._actions if a.dest == dest)


def _spaced(values) -> str:
    return " ".join(map(str, values))


# options whose default lives in the module that runs them: the help must name that value
MODULE_DEFAULTS = [
    (("bench", "pipeline"), "frames", pipeline_bench.DEFAULT_FRAMES),
    (("bench", "pipeline"), "threads", _spaced(pipeline_bench.DEFAULT_THREADS)),
    (("bench", "pipeline"), "warmup", pipeline_bench.DEFAULT_WARMUP),
    (("bench", "search"), "size", search_bench.DEFAULT_SIZE),
    (("bench", "search"), "timed", search_bench.TIMED_PROBES),
    (("bench", "search"), "threads", _spaced(search_bench.THREAD_COUNTS)),
    (("eval", "transaction"), "burst", transaction.DOOR_BURST_FRAMES),
    (("eval", "transaction"), "attempts", transaction.DOOR_ATTEMPTS),
]


@pytest.mark.parametrize(("path", "dest", "value"), MODULE_DEFAULTS,
                         ids=[f"{' '.join(path)} --{dest}" for path, dest, _ in MODULE_DEFAULTS])
def test_a_default_kept_in_its_module_is_the_one_the_help_names(path, dest, value):
    action = _option(*path, dest=dest)
    assert action.default is None  # the handler takes the module's value
    assert f"(default {value}" in action.help, action.help
