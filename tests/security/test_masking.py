"""Masking rules, the logging filter, and audited unmasked access."""
from __future__ import annotations

import logging

import pytest

from appliance.errors import ApplianceError
from appliance.security.masking import (
    MaskingFilter, mask_name, mask_number, mask_record, mask_text, reveal,
)
from appliance.security.roles import Role
from appliance.stores.audit import AuditLog


@pytest.mark.parametrize("name, masked", [
    ("张三", "张*"), ("欧阳娜娜", "欧***"), ("Zhang San", "Z**** S**"), ("Li", "L*"), ("", ""),
])
def test_names(name, masked):
    assert mask_name(name) == masked


def test_latin_name_example_from_the_rules():
    # "Zhang San -> Z*** S**" in the issue keeps the first letter and stars the rest per word
    assert mask_name("Zhang San").split() == ["Z" + "*" * 4, "S**"]


@pytest.mark.parametrize("value, masked", [
    ("110101199003078515", "110***********8515"),
    ("13812345678", "138****5678"),
    ("+86 138-1234-5678", "+86 1**-****-5678"),
    ("6222021234567890123", "622************0123"),
    ("E12345", "****45"),
])
def test_numbers_keep_first_three_and_last_four(value, masked):
    assert mask_number(value) == masked


def test_free_text_and_records():
    text = "card 6222021234567890123 phone 13812345678 at door 3"
    assert mask_text(text) == "card 622************0123 phone 138****5678 at door 3"
    record = mask_record({"name": "张三", "phone": "13812345678", "subject_id": "s-ab12", "templates": 1})
    assert record == {"name": "张*", "phone": "138****5678", "subject_id": "s-ab12", "templates": 1}


def test_log_records_are_masked(caplog):
    logger = logging.getLogger("appliance.test.masking")
    caplog.handler.addFilter(MaskingFilter())
    with caplog.at_level(logging.INFO, logger=logger.name):
        logger.info("enrolled card %s", "6222021234567890123")
    assert "6222021234567890123" not in caplog.text and "622************0123" in caplog.text


def test_unmasked_access_needs_the_role_and_is_logged(tmp_path, keys, principals):
    audit = AuditLog.open_with(tmp_path / "audit.db", keys, "node-1")
    record = {"name": "张三"}
    assert reveal(record, principals[Role.SECURITY_ADMIN], audit, "s-1") == record
    with pytest.raises(ApplianceError):
        reveal(record, principals[Role.OPERATOR], audit, "s-1")
    assert [(e.action, e.result, e.role) for e in audit.entries()] == [
        ("identity.reveal", "ok", "security_administrator"), ("identity.reveal", "denied", "operator")]
    audit.close()
