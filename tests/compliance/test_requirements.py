"""The requirement list as data: it covers the checklist of the standard's notes, every row
names a known check and its source, and a bad row is refused with its id."""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
import zipfile

import pytest

from appliance import paths
from appliance.compliance.checks import KNOWN_CHECKS, config_value
from appliance.compliance.requirements import default_path, load_requirements
from appliance.config import Config
from appliance.errors import ApplianceError, ErrorCode

PIP_TIMEOUT_S = 600
NOT_SOURCES = (".git", ".venv", ".cache", "var", "build", "dist", "reports", "*.egg-info", "__pycache__", "tests",
               "*.onnx", "*.task", "*.dat", "*.tflite")
FRONT_MATTER_IDS = re.compile(r"^requirements: \[([^\]]*)\]", re.MULTILINE)
CHECKLIST_ROW = re.compile(r"^\| ([A-Z]+-[A-Z]+-\d+) \|", re.MULTILINE)
ROW = """
[areas]
data = "数据要求 Data"

[[requirement]]
id = "D-X-1"
area = "data"
source = "test clause"
en = "a requirement"
zh = "一项要求"
check = "{check}"
tests = ["tests/test_layers.py"]
"""


def test_every_numbered_row_of_the_checklist_is_in_the_list(shared):
    notes = (shared / "spec" / "requirements.md").read_text(encoding="utf-8")
    numbered = set(CHECKLIST_ROW.findall(notes))
    assert len(numbered) > 60, "the checklist of the notes was not found"
    listed = load_requirements(KNOWN_CHECKS)
    ids = {row.id for row in listed.rows}
    assert numbered <= ids, f"rows of the checklist missing from the list: {sorted(numbered - ids)}"
    assert listed.path == default_path()


def test_every_row_has_a_source_both_texts_and_a_way_to_judge_it():
    listed = load_requirements(KNOWN_CHECKS)
    for row in listed.rows:
        assert row.source and row.en and row.zh and row.area in listed.areas, row.id
        assert re.search(r"[\u4e00-\u9fff]", row.zh), f"{row.id}: the Chinese text is missing"
        if row.check in ("gap", "not_applicable"):
            assert row.reason, f"{row.id}: a {row.check} row says why"
        if row.check not in ("not_applicable",):
            assert row.action, f"{row.id}: says what to do where not met"
        if row.check == "document":
            assert row.docs, f"{row.id}: names its document"


def test_every_test_file_and_configuration_key_named_exists():
    """A row whose test file was renamed would stay "not met" for a reason nobody could fix."""
    config = Config()
    for req in load_requirements(KNOWN_CHECKS).rows:
        for test_file in req.tests:
            assert (paths.REPO_ROOT / test_file).is_file(), f"{req.id}: {test_file} does not exist"
        for key in (*req.show, *(c.key for c in req.config)):
            config_value(config, key)  # raises for an unknown key
    with pytest.raises(ApplianceError, match="unknown configuration key 'security.no_such_key'"):
        config_value(config, "security.no_such_key")


def test_the_document_templates_and_the_rows_name_each_other():
    """Each template says in its front matter which rows it satisfies (``requirements: [..]``):
    the rows that ask for it are among them, and every id it names is a row of the list."""
    listed = load_requirements(KNOWN_CHECKS)
    ids = {row.id for row in listed.rows}
    templates = paths.REPO_ROOT / "docs" / "compliance"
    named: dict[str, set[str]] = {}
    for template in sorted(templates.glob("*.md")):
        found = FRONT_MATTER_IDS.search(template.read_text(encoding="utf-8"))
        if found:
            named[template.name] = {i.strip() for i in found.group(1).split(",")}
            assert named[template.name] <= ids, f"{template.name} names unknown rows {named[template.name] - ids}"
    for row in listed.rows:
        for doc in row.docs:
            if doc in named:
                assert row.id in named[doc], f"{row.id} asks for {doc}, which does not name it"


def test_a_row_with_an_unknown_check_is_refused_by_its_id(tmp_path):
    path = tmp_path / "requirements.toml"
    path.write_text(ROW.format(check="no_such_check"), encoding="utf-8")
    with pytest.raises(ApplianceError) as caught:
        load_requirements(KNOWN_CHECKS, path)
    assert caught.value.code is ErrorCode.CONFIG_INVALID
    assert "requirement D-X-1: unknown check 'no_such_check'" in str(caught.value)


def test_a_duplicate_id_and_a_bad_condition_are_refused(tmp_path):
    path = tmp_path / "requirements.toml"
    row = ROW.format(check="tested")
    path.write_text(row + "\n[[requirement]]" + row.split("[[requirement]]")[1], encoding="utf-8")
    with pytest.raises(ApplianceError, match="D-X-1 appears twice"):
        load_requirements(KNOWN_CHECKS, path)
    path.write_text(row + 'config = [{ key = "security.node_id", op = "~", value = 1 }]\n', encoding="utf-8")
    with pytest.raises(ApplianceError, match="D-X-1: each config condition"):
        load_requirements(KNOWN_CHECKS, path)
    path.write_text(row, encoding="utf-8")
    assert [r.id for r in load_requirements(KNOWN_CHECKS, path).rows] == ["D-X-1"]


def test_the_list_and_the_report_page_ship_in_the_wheel(tmp_path):
    """An installed site has no checkout: the list and the page come from inside the package."""
    sources = tmp_path / "src"
    shutil.copytree(paths.REPO_ROOT, sources, ignore=shutil.ignore_patterns(*NOT_SOURCES))
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path / "dist"),
                            str(sources)], capture_output=True, text=True, timeout=PIP_TIMEOUT_S, cwd=tmp_path)
    assert built.returncode == 0, built.stderr
    with zipfile.ZipFile(next((tmp_path / "dist").glob("face_appliance-*.whl"))) as wheel:
        names = set(wheel.namelist())
    assert "appliance/defaults/config/compliance/requirements.toml" in names
    assert {"appliance/compliance/templates/report.html", "appliance/compliance/report.py"} <= names
