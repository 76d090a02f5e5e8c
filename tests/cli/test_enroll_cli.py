"""``appliance enroll``, ``identify`` and ``notice`` run as real commands in a subprocess, on
a data folder of their own, acting through API tokens of real accounts (``tests/authkit``)."""
from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np
import pytest

from appliance.config import load_config
from appliance.errors import ErrorCode
from appliance.security.roles import Role

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from authkit import make_token  # noqa: E402

PERSON_A, PERSON_B, STRANGER = "id07201", "id07206", "id07211"
PERSON_C, PERSON_D = "id07212", "id07229"  # enrolled last, on a site with everyone above


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("enroll-cli")
    data = root / "var"
    data.mkdir()
    config = load_config()
    return {"root": root, "data": data, "operator": make_token(data, Role.OPERATOR, config=config),
            "security": make_token(data, Role.SECURITY_ADMIN, config=config),
            "auditor": make_token(data, Role.AUDITOR, config=config)}


def run(site: dict, *args: str, token: str | None = "operator") -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("APPLIANCE_TOKEN")}
    env.update(APPLIANCE_DATA_DIR=str(site["data"]), XDG_RUNTIME_DIR=str(site["root"]))  # no login session
    command = [sys.executable, "-m", "appliance", *args] + (["--token", site[token]] if token else [])
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)


def photos(faces: Path, identity: str, start: int = 0, count: int = 3) -> list[str]:
    return [str(p) for p in sorted((faces / "celeba-dev" / identity).glob("*.jpg"))[start:start + count]]


def one_error(result: subprocess.CompletedProcess, code: ErrorCode) -> None:
    assert result.returncode == code.exit_status, result.stderr
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and f"E{code.number}" in errors[0], result.stderr


@pytest.fixture(scope="module")
def enrolled(site, faces) -> dict:
    result = run(site, "enroll", *photos(faces, PERSON_A), "--name", "Zhang San", "--consent-ref", "form-17",
                 "--group", "lobby", "--local-matching", "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_enroll_prints_the_outcome_as_json(enrolled):
    assert enrolled["status"] == "enrolled" and enrolled["subject_id"].startswith("s-")
    assert enrolled["images_used"] == 3 and enrolled["rejected"] == []
    assert {"subject_id", "images_used", "rejected", "status"} <= set(enrolled)
    usable = enrolled["usable_at"]  # local-matching consent, no central matching on this site
    assert usable["where"] == "doors" and usable["groups"] == ["lobby"] and usable["local_matching"]
    assert enrolled["warnings"] == [] and usable["reason"] == ""


def test_the_same_face_again_is_a_duplicate_until_a_security_administrator_overrides(site, faces, enrolled):
    again = run(site, "enroll", *photos(faces, PERSON_A, 3), "--name", "Zhang Wei", "--consent-ref", "form-18",
                "--json")
    one_error(again, ErrorCode.DUPLICATE_ENROLLMENT)
    outcome = json.loads(again.stdout)
    assert outcome["status"] == "duplicate" and outcome["subject_id"] == ""
    assert outcome["duplicate_of"] == f"Z**** S** ({enrolled['subject_id']})"
    assert "Zhang" not in again.stdout + again.stderr  # masked names only
    override = ["enroll", *photos(faces, PERSON_A, 3), "--name", "Zhang Wei", "--consent-ref", "form-18",
                "--override-duplicate", "identical twins, passports checked"]
    one_error(run(site, *override), ErrorCode.PERMISSION_DENIED)
    done = run(site, *override, "--json", token="security")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["overridden"] is True


def test_photos_that_never_pass_are_a_failure_to_enrol(site, faces, tmp_path):
    face = cv2.imread(photos(faces, PERSON_B, 0, 1)[0])
    wall, tiny = tmp_path / "wall.png", tmp_path / "tiny.png"
    cv2.imwrite(str(wall), np.full((240, 320, 3), 128, np.uint8))
    cv2.imwrite(str(tiny), cv2.resize(face, (30, 36), interpolation=cv2.INTER_AREA))
    result = run(site, "enroll", str(wall), str(tiny), "--name", "Li Si", "--consent-ref", "form-19", "--json")
    one_error(result, ErrorCode.ENROLL_FAILED)
    outcome = json.loads(result.stdout)
    assert outcome["status"] == "failed_to_enroll" and outcome["subject_id"] == ""
    assert [r["image"] for r in outcome["rejected"]] == [str(wall), str(tiny)]
    assert outcome["rejected"][0] == {"image": str(wall), "reason": "no_face",
                                      "guidance": "step in front of the camera"}
    assert all(r["reason"] and r["guidance"] for r in outcome["rejected"])


def test_refusals_before_any_photo_is_judged(site, faces, tmp_path):
    notes = tmp_path / "notes.jpg"
    notes.write_text("not a photo")
    person_b = photos(faces, PERSON_B)
    refusals = [  # (command, token, expected): none enrolls anyone, so they run side by side
        (("enroll", *person_b, "--name", "Li Si"), "operator", ErrorCode.CONSENT_MISSING),
        (("enroll", *person_b, "--name", "Li Xiaoming", "--consent-ref", "f-20", "--age-band", "under_14"),
         "operator", ErrorCode.CONSENT_MISSING),
        (("enroll", *person_b, "--name", "Li Si", "--consent-ref", "f-21"), None, ErrorCode.AUTH_REQUIRED),
        (("enroll", *person_b, "--name", "Li Si", "--consent-ref", "f-21"), "auditor", ErrorCode.PERMISSION_DENIED),
        (("enroll", str(notes), "--name", "Li Si", "--consent-ref", "f-22"), "operator", ErrorCode.IMAGE_UNREADABLE),
    ]
    with ThreadPoolExecutor(len(refusals)) as pool:
        results = list(pool.map(lambda refusal: run(site, *refusal[0], token=refusal[1]), refusals))
    for result, (_, _, expected) in zip(results, refusals):
        one_error(result, expected)


def test_identify_answers_match_or_no_match(site, faces, enrolled):
    found = run(site, "identify", photos(faces, PERSON_A, 6, 1)[0], "--json")
    assert found.returncode == 0, found.stderr
    answer = json.loads(found.stdout)
    assert set(answer) == {"decision", "subject_id", "name"} and answer["decision"] == "match"
    if answer["subject_id"] == enrolled["subject_id"]:
        assert answer["name"] == "Z**** S**"
    else:  # the twin a security administrator enrolled with the same face (test above) may be nearer
        assert answer["name"] == "Z**** W**" and answer["subject_id"].startswith("s-")
    debug = run(site, "identify", photos(faces, PERSON_A, 6, 1)[0], "--json", "--debug")
    assert isinstance(json.loads(debug.stdout)["score"], float)
    nobody = run(site, "identify", photos(faces, STRANGER, 0, 1)[0], "--json")
    assert nobody.returncode == 1 and json.loads(nobody.stdout)["decision"] == "no_match"


def test_folder_import_with_manifest_and_report(site, faces, tmp_path):
    folder = tmp_path / "people"
    for name, identity in (("chen", PERSON_B), ("wang", STRANGER)):
        (folder / name).mkdir(parents=True)
        for photo in photos(faces, identity):
            shutil.copy(photo, folder / name)
    (folder / "blank").mkdir()
    cv2.imwrite(str(folder / "blank" / "wall.png"), np.full((240, 320, 3), 128, np.uint8))
    (folder / "child").mkdir()
    shutil.copy(photos(faces, PERSON_A, 7, 1)[0], folder / "child")
    rows = [("folder", "name", "consent_ref", "groups", "age_band", "guardian"),
            ("chen", "Chen Qi", "form-31", "lobby;lab", "", ""),
            ("wang", "Wang Wu", "form-32", "", "adult", ""),
            ("blank", "Blank Wall", "form-33", "", "", ""),
            ("child", "Li Xiaoming", "form-34", "", "under_14", "")]
    with (folder / "manifest.csv").open("w", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerows(rows)
    report = tmp_path / "report.csv"
    result = run(site, "enroll", "--folder", str(folder), "--report", str(report), "--json")
    assert result.returncode == ErrorCode.ENROLL_FAILED.exit_status, result.stderr
    with report.open(encoding="utf-8") as handle:
        outcomes = {r["folder"]: r for r in csv.DictReader(handle)}
    assert list(outcomes) == ["chen", "wang", "blank", "child"]
    assert outcomes["chen"]["status"] == "enrolled" and outcomes["chen"]["subject_id"].startswith("s-")
    assert outcomes["chen"]["person"] == "C*** Q*" and outcomes["chen"]["images_used"] == "3"
    assert outcomes["wang"]["status"] == "enrolled"
    assert outcomes["blank"]["status"] == "failed_to_enroll" and "wall.png: no_face" in outcomes["blank"]["rejections"]
    assert outcomes["child"]["status"] == "error" and "E240" in outcomes["child"]["error"]
    assert "Chen" not in report.read_text(encoding="utf-8")
    assert (outcomes["chen"]["usable_at"], outcomes["child"]["usable_at"]) == ("nowhere", "")
    assert "no local-matching consent" in outcomes["wang"]["warning"] and not outcomes["child"]["warning"]
    assert "warning: 2 enrolled face(s) open no door" in result.stderr
    assert json.loads(result.stdout)["counts"] == {"enrolled": 2, "failed_to_enroll": 1, "duplicate": 0, "error": 1}
    again = run(site, "enroll", "--folder", str(folder), "--report", str(report))
    assert again.returncode == ErrorCode.ENROLL_FAILED.exit_status  # chen and wang are duplicates now
    with report.open(encoding="utf-8") as handle:
        assert [r["status"] for r in csv.DictReader(handle)][:2] == ["duplicate", "duplicate"]
    (folder / "manifest.csv").write_text("folder,name\nchen,Chen Qi\n", encoding="utf-8")
    one_error(run(site, "enroll", "--folder", str(folder)), ErrorCode.DATASET_INVALID)


def test_notice_prints_the_versioned_text():
    result = subprocess.run([sys.executable, "-m", "appliance", "notice", "--language", "en", "--json"],
                            capture_output=True, text=True, timeout=120)
    shown = json.loads(result.stdout)
    assert result.returncode == 0 and shown["version"] == "face-enrollment-v1" and "guardian" in shown["text"]


def test_a_face_usable_at_no_door_is_told_on_stderr_until_the_site_justifies_central_matching(site, faces):
    """Enrolled (exit 0), yet with no justification for central matching on the site and no
    local-matching consent no door recognises the face: stderr says so, why and what to do."""
    unusable = run(site, "enroll", *photos(faces, PERSON_C), "--name", "Zhao Liu", "--consent-ref", "form-40")
    assert unusable.returncode == 0, unusable.stderr
    assert "error:" not in unusable.stderr and unusable.stdout.startswith("enrolled s-")
    (warning,) = [line for line in unusable.stderr.splitlines() if line.startswith("warning:")]
    assert "usable at no door" in warning and "no local-matching consent" in warning
    assert "--local-matching" in warning and "appliance site matching justify" in warning
    justified = run(site, "--token", site["security"], "site", "matching", "justify", "--reason",  # before: a
                    "one matcher serves the four buildings of this employer", token=None)  # nested subcommand
    assert justified.returncode == 0, justified.stderr
    central = run(site, "enroll", *photos(faces, PERSON_D), "--name", "Sun Qi", "--consent-ref", "form-41", "--json")
    assert central.returncode == 0, central.stderr
    outcome = json.loads(central.stdout)
    assert outcome["usable_at"]["where"] == "central" and outcome["usable_at"]["central_matching"]
    assert outcome["warnings"] == [] and "warning:" not in central.stderr
