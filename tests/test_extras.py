"""Optional dependencies: each lives in a setup.cfg extra, and its absence is a clear error
naming the extra; every third-party import in ``appliance/`` is accounted for."""
from __future__ import annotations

import ast
import configparser
import importlib.metadata
import os
import re
import subprocess
import sys
import textwrap

import pytest

from appliance import paths
from appliance.cli.main import OPTIONAL_EXTRAS
from appliance.errors import ApplianceError, ErrorCode

SETUP_CFG = paths.REPO_ROOT / "setup.cfg"
BLOCK_MATPLOTLIB = "import sys; sys.modules['matplotlib'] = None\n"  # as if not installed
# set-up converters run by path in a throw-away venv with their manifest's converter_requires
# (torch, onnx), never inside the appliance's own environment
OUT_OF_PROCESS = paths.REPO_ROOT / "appliance" / "packs" / "converters"


def _options() -> configparser.ConfigParser:
    parser = configparser.ConfigParser()
    parser.read(SETUP_CFG)
    return parser


def _requirement_names(text: str) -> list[str]:
    lines = [line.split("#")[0].strip() for line in text.splitlines()]
    return [re.split(r"[<>=!~;\[ ]", line)[0].lower() for line in lines if line]


def _python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", BLOCK_MATPLOTLIB + code], capture_output=True, text=True,
                          timeout=120, env=dict(os.environ))


@pytest.mark.parametrize("call", [
    "from appliance.evaluation.plots import det_plot\ndet_plot({}, Path('det.png'), 'DET')",
    "from appliance.bench.report import plot\nplot(None, Path('bench.png'))",
])
def test_plots_without_matplotlib_name_the_extra(call):
    result = _python("from pathlib import Path\nfrom appliance.errors import ApplianceError\ntry:\n"
                     + "".join(f"    {line}\n" for line in call.splitlines())
                     + "except ApplianceError as exc:\n    print(exc.code.name, exc.detail)\n")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "DEPENDENCY_MISSING plots need matplotlib: pip install 'face-appliance[plots]'"


def test_the_command_line_names_the_extra_for_any_unguarded_optional_import():
    result = _python(textwrap.dedent("""
        import appliance.cli.main as cli

        def handler(args):  # a command that imports an optional package without a guard
            import matplotlib.pyplot

        build = cli.build_parser
        def build_parser():
            parser = build()
            parse = parser.parse_args
            def parse_args(argv=None):
                args = parse(argv)
                args.handler = handler
                return args
            parser.parse_args = parse_args
            return parser
        cli.build_parser = build_parser
        sys.exit(cli.main(["health"]))
        """))
    assert result.returncode == ErrorCode.DEPENDENCY_MISSING.exit_status and "Traceback" not in result.stderr
    assert result.stderr.strip() == ("error: E130 optional dependency not installed: matplotlib is not installed: "
                                     "pip install 'face-appliance[plots]'")


def test_the_pi_camera_without_picamera2_names_the_extra(monkeypatch):
    from appliance.capture.sources import Picamera2Source

    monkeypatch.setitem(sys.modules, "picamera2", None)
    with pytest.raises(ApplianceError) as missing:
        Picamera2Source()
    assert missing.value.code is ErrorCode.DEPENDENCY_MISSING and "'face-appliance[pi]'" in missing.value.detail


def test_extras_and_requirements():
    options = _options()
    required = _requirement_names(options["options"]["install_requires"])
    extras = {name: _requirement_names(text) for name, text in options["options.extras_require"].items()}
    assert "ai-edge-litert" not in required  # 59 MB that nothing imported
    assert "matplotlib" not in required and extras["plots"] == ["matplotlib"]
    assert set(OPTIONAL_EXTRAS.values()) <= set(extras)
    constraints = _requirement_names((paths.REPO_ROOT / "constraints.txt").read_text())
    assert "ai-edge-litert" not in constraints


def _third_party_imports() -> dict[str, list[tuple[str, bool]]]:
    """module -> [(file:line, guarded by ``except ImportError`` around it)]."""
    found: dict[str, list[tuple[str, bool]]] = {}
    for path in sorted((paths.REPO_ROOT / "appliance").rglob("*.py")):
        if OUT_OF_PROCESS in path.parents:
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        guarded_lines: set[int] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Try) and any(
                    isinstance(h.type, ast.Name) and h.type.id in ("ImportError", "ModuleNotFoundError")
                    or isinstance(h.type, ast.Tuple) and any(getattr(e, "id", "") == "ImportError" for e in h.type.elts)
                    for h in node.handlers):
                for inner in node.body:
                    guarded_lines.update(range(inner.lineno, (inner.end_lineno or inner.lineno) + 1))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top in sys.stdlib_module_names or top in ("appliance", "__future__"):
                    continue
                where = f"{path.relative_to(paths.REPO_ROOT)}:{node.lineno}"
                found.setdefault(top, []).append((where, node.lineno in guarded_lines))
    return found


def test_every_third_party_import_is_required_or_an_extra_with_a_clear_error():
    providers = importlib.metadata.packages_distributions()  # module -> distributions
    required = set(_requirement_names(_options()["options"]["install_requires"]))
    required_modules = {module for module, dists in providers.items()
                        if {d.lower().replace("_", "-") for d in dists} & required}
    required_modules |= {name.replace("-", "_") for name in required}  # not installed here (tomli on 3.11+)
    unaccounted = {module: sites for module, sites in _third_party_imports().items()
                   if module not in required_modules and module not in OPTIONAL_EXTRAS
                   and not all(guarded for _, guarded in sites)}
    assert unaccounted == {}, ("imports neither in install_requires, nor caught with a clear error, nor in "
                               "appliance.cli.main.OPTIONAL_EXTRAS")
