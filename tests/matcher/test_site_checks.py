"""``SiteChecks``: provisioning's sender and matching-mode checks, remembered while the PKI
registry and the device policies are unchanged, never longer than ``PROVISIONING_RECHECK_S``
past a revocation or a policy change."""
from __future__ import annotations

import time

import pytest

from appliance.matcher.site_checks import MAX_PROVISIONING_RECHECK_S, PROVISIONING_RECHECK_S, SiteChecks
from appliance.ops import provisioning
from appliance.protocol import topics
from appliance.site import Site

CALLS = 2000
MEMO_SPEED_UP = 5  # remembered answers cost a clock read instead of parsing every identity


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_site_checks_answer_as_provisioning_and_follow_revocation_and_policy_changes(tmp_path):
    site = Site(tmp_path)
    site.provision(("door-a", "door-b"), matchers=("matcher-1",))
    pki = site.broker.pki
    clock = Clock()
    checks = SiteChecks(pki, clock=clock)
    request = topics.device_topic("door-a", topics.REQUEST)
    assert checks.may_send("door-a", request) and checks.device_allowed("door-a", "identify")
    assert not checks.may_send("door-b", request)  # another door's topic
    assert not checks.may_send("nobody", request) and not checks.device_allowed("matcher-1", "verify")
    assert checks.device_allowed("door-b", "identify")
    provisioning.enroll_device(pki, "door-b", modes=("verify",))  # its policy replaced: verify only
    clock.now += PROVISIONING_RECHECK_S
    assert checks.device_allowed("door-b", "verify") and not checks.device_allowed("door-b", "identify")
    assert checks.may_send("door-a", request)
    provisioning.revoke_device(pki, "door-a", restart_broker=lambda: None)
    clock.now += PROVISIONING_RECHECK_S / 2
    assert checks.may_send("door-a", request)  # remembered: the files are not looked at yet
    clock.now += PROVISIONING_RECHECK_S / 2
    assert not checks.may_send("door-a", request) and not checks.device_allowed("door-a", "identify")


def test_without_a_recheck_interval_every_check_sees_a_revocation_at_once(tmp_path):
    site = Site(tmp_path)
    site.provision(("door-a",), matchers=("matcher-1",))
    checks, request = SiteChecks(site.broker.pki, recheck_s=0.0), topics.device_topic("door-a", topics.REQUEST)
    assert checks.may_send("door-a", request)
    provisioning.revoke_device(site.broker.pki, "door-a", restart_broker=lambda: None)
    assert not checks.may_send("door-a", request) and not checks.device_allowed("door-a", "identify")
    with pytest.raises(ValueError):
        SiteChecks(site.broker.pki, recheck_s=MAX_PROVISIONING_RECHECK_S + 1)


def test_remembered_answers_are_much_cheaper_than_asking_provisioning(tmp_path):
    site = Site(tmp_path)
    site.provision(tuple(f"door-{i:02d}" for i in range(40)), matchers=("matcher-1",))
    pki, request = site.broker.pki, topics.device_topic("door-07", topics.REQUEST)
    checks = SiteChecks(pki)

    def cost(check) -> float:
        check()
        start = time.thread_time()
        for _ in range(CALLS):
            check()
        return time.thread_time() - start

    direct = cost(lambda: provisioning.may_send(pki, "door-07", request))
    remembered = cost(lambda: checks.may_send("door-07", request))
    assert remembered * MEMO_SPEED_UP < direct, (remembered, direct)
