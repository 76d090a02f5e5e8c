"""Transaction-level evaluation: the enrollment policy, the door's best-of-burst and retry,
and the rates, first on hand-made measures (every count known), then end to end on real
faces through ``appliance eval transaction`` with the real models."""
from __future__ import annotations

import json

import numpy as np
import pytest

from appliance.cli.main import main
from appliance.config import QualityProfile
from appliance.config.quality_presets import APPLIANCE_ENROLLMENT, ISO_19794_5_ENROLLMENT
from appliance.config.tables import quality_preset
from appliance.errors import ApplianceError, ErrorCode
from appliance.evaluation import transaction
from appliance.evaluation.transaction import CONTRACT_KEYS, Identity, ImageRecord

PACK = ("test-pack", "1")
ENROLLMENT = quality_preset(ISO_19794_5_ENROLLMENT)
DOOR = QualityProfile(min_inter_eye_px=20.0, min_utility=0.7)
YALE_IDENTITIES = 6  # enough for a split of 3 + 3, quick on 2 cores


def measures(ied: float = 120.0, yaw: float = 0.0, utility: float = 1.0) -> dict[str, float]:
    return {"inter_eye_px": ied, "yaw_deg": yaw, "pitch_deg": 0.0, "roll_deg": 0.0, "eye_closure": 0.1,
            "landmarks_in_frame": 1.0, "other_faces": 0.0, "sharpness": 100.0, "brightness": 120.0,
            "contrast": 40.0, "clipped_fraction": 0.0, "utility": utility}


def unit(*values: float) -> np.ndarray:
    vector = np.array(values, np.float32)
    return vector / np.linalg.norm(vector)


def test_enrollment_runs_the_desks_policy_over_the_images_in_order():
    bad = ImageRecord(measures(ied=60.0), unit(0, 1))  # too small for the ISO profile
    good = ImageRecord(measures(), unit(1, 0))
    turned = ImageRecord(measures(yaw=12.0), unit(1, 1))
    # attempt 1: three rejected; attempt 2: one accepted of three -> the attempt completes
    records = [bad, bad, ImageRecord(None, None), good, turned, bad, good, good]
    reference, used = transaction.enrol(records, ENROLLMENT, PACK)
    assert used == 6 and np.allclose(reference, unit(1, 0))
    # nothing acceptable in 3 attempts of 3: a failure to enrol after 9 images
    assert transaction.enrol([bad] * 12, ENROLLMENT, PACK) == (None, 9)
    # the old, looser profile accepts the 60 px face at once
    assert transaction.enrol([bad] * 3, quality_preset(APPLIANCE_ENROLLMENT), PACK)[1] == 3


def test_a_door_attempt_takes_the_best_frame_and_fails_on_its_utility():
    small, large = ImageRecord(measures(ied=25.0), unit(0, 1)), ImageRecord(measures(ied=90.0), unit(1, 0))
    assert np.allclose(transaction.door_attempt([small, ImageRecord(None, None), large], DOOR), unit(1, 0))
    weak = ImageRecord(measures(utility=0.5), unit(1, 0))
    assert transaction.door_attempt([weak], DOOR) is None
    assert transaction.door_attempt([ImageRecord(None, None)] * 3, DOOR) is None


def test_rates_count_transactions_with_retries_ftas_and_impostor_claims():
    me, you, them = unit(1, 0, 0), unit(0, 1, 0), unit(0, 0, 1)
    people = [
        # first attempt not acquired, the retry matches: accepted
        Identity("a", me, 3, [[None, me], [None, None]]),  # the second transaction is an FTA
        Identity("b", you, 3, [[unit(1, 1, 0), you]]),  # the first try looks like a: impostor accepted for a
        Identity("c", None, 9, [[them, them]]),  # failed to enrol: only an impostor
    ]
    result = transaction.scores(people)
    report = transaction.report(people, result, threshold=0.6, model={"pack": "p"})
    assert list(report)[:len(CONTRACT_KEYS)] == list(CONTRACT_KEYS)
    assert report["fte_rate"] == pytest.approx(1 / 3) and report["counts"]["failed_to_enrol"] == 1
    assert report["fta_rate"] == pytest.approx(1 / 4)
    assert report["frr"] == pytest.approx(1 / 3)  # a's FTA transaction, of 3 genuine ones
    # claims: a's 2 transactions x b, b's 1 x a, c's 1 x (a, b); b's first try matches a
    assert report["transactions"]["impostor"] == 5 and report["counts"]["false_accepts"] == 1
    assert report["far"] == pytest.approx(1 / 5)
    assert all(low <= high for low, high in report["ci95"].values())
    # 1:N: b's transaction finds a among the others; a's FTA finds nobody
    assert report["identification"]["far"] == pytest.approx(1 / 4)
    # FAR 0.2 of 5 claims allows one false accept: the threshold sits just above the second score (0)
    threshold = transaction.calibrated_threshold(result, 0.2)
    assert 0.0 < threshold < 1e-6 and np.mean(result.impostor_claims >= threshold) <= 0.2
    with pytest.raises(ApplianceError) as error:  # 5 claims cannot show a FAR of 0.1
        transaction.calibrated_threshold(result, 0.1)
    assert error.value.code is ErrorCode.DATASET_INVALID


@pytest.fixture(scope="module")
def yale_subset(faces, tmp_path_factory):
    folder = tmp_path_factory.mktemp("yale")
    for person in sorted((faces / "yale").iterdir())[:YALE_IDENTITIES]:
        (folder / person.name).symlink_to(person, target_is_directory=True)
    return folder


def test_the_command_reports_the_contract_per_pack_on_real_faces(yale_subset, tmp_path, capsys):
    out = tmp_path / "reports"
    status = main(["eval", "transaction", str(yale_subset), "--split", "b", "--calibrate-on", "a",
                   "--target-far", "0.2", "--out", str(out)])
    assert status == 0
    report = json.loads((out / "transaction-w600k-mbf.json").read_text())
    assert set(CONTRACT_KEYS) <= set(report) and set(report["model"]) >= {"pack", "licence", "commercial_use"}
    assert report["model"]["commercial_use"] is False and report["threshold_source"] == "FAR 0.2 on split a"
    assert report["counts"]["identities"] == YALE_IDENTITIES // 2 and report["transactions"]["genuine"] >= 3
    assert report["frr"] == 0.0  # frontal lab photos, retries allowed
    # a threshold set on 6 claims at FAR 0.2 allows one false accept: the rate is what was counted
    assert report["far"] == report["counts"]["false_accepts"] / report["transactions"]["impostor"]
    low, high = report["ci95"]["far"]
    assert low - 1e-12 <= report["far"] <= high  # (Wilson's lower bound of 0 errors is 0 up to rounding)
    # 320x243 lab photos: nobody meets the standard's 90 px, everybody the old profile's 30 px
    assert report["fte_by_profile"] == {"configured": 0.0, ISO_19794_5_ENROLLMENT: 1.0, APPLIANCE_ENROLLMENT: 0.0}
    assert "FRR 0.00 %" in capsys.readouterr().out


def test_an_impossible_calibration_is_a_clear_error(yale_subset, capsys):
    status = main(["eval", "transaction", str(yale_subset), "--split", "a", "--calibrate-on", "a"])
    assert status == ErrorCode.DATASET_INVALID.exit_status
    assert "calibrate on one split" in capsys.readouterr().err
