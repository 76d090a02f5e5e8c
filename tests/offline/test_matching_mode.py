"""The matching-mode decision at a real door: a door configured for central matching asks the
matcher only while the site holds a recorded justification; without one it decides from its
own cache and no template leaves it (real Mosquitto with TLS, real SQLCipher files, the
matcher's real sync store)."""
from __future__ import annotations

import numpy as np
import pytest

from appliance.edge.offline import open_door
from appliance.matcher.site_policy import justify, matching_decision, revoke
from appliance.protocol import messages
from offkit import ADMIN, PACK, make_site, offline_config, probe_of, request, start_matcher, wait_for

REASON = "the doors of this test site share one matcher; decided for the broker-backed test"


@pytest.fixture(scope="module")
def site(tmp_path_factory, config):
    made = make_site(tmp_path_factory.mktemp("matching-mode-site"), config, people=4)
    yield made
    made.broker.stop()
    made.data.close()


def central_answers(matcher) -> int:
    """Decisions the matcher made (each one a template that left a door)."""
    return matcher.stats["accepted"] + matcher.stats["rejected"]


def test_central_mode_without_a_justification_decides_at_the_door(site):
    matcher = start_matcher(site, central=False)
    door = open_door(site, "door-a", offline_config(mode="central"), threshold=0.4)
    try:
        assert matching_decision(matcher.store) is None
        assert door.sync.wait_current(10) and not door.sync.central_allowed
        assert door.decider.mode == "local"
        subject, vector = next(iter(site.people.items()))
        for _ in range(3):
            decision = door.decider.request(request("door-a", probe_of(vector, site.rng)), PACK)
            assert decision.accepted and door.decider.last_source == "local"
        stranger = np.random.default_rng(7).normal(size=512).astype(np.float32)
        refused = door.decider.request(request("door-a", stranger / np.linalg.norm(stranger)), PACK)
        # central would be asked about a stranger in local-first: not without a justification
        assert not refused.accepted and refused.reason == messages.Reason.NO_MATCH
        assert door.decider.stats["central"] == 0 and central_answers(matcher) == 0

        # the security administrator records why: the doors are told at once, and ask the matcher
        justify(site.data, matcher.store, ADMIN, REASON)
        assert wait_for(lambda: door.sync.central_allowed, 10)
        assert door.decider.mode == "central"
        decision = door.decider.request(request("door-a", probe_of(vector, site.rng)), PACK)
        assert decision.accepted and door.decider.last_source == "central" and central_answers(matcher) == 1

        # revoked: back to the door's own cache
        revoke(site.data, matcher.store, ADMIN)
        assert wait_for(lambda: not door.sync.central_allowed, 10)
        decision = door.decider.request(request("door-a", probe_of(vector, site.rng)), PACK)
        assert decision.accepted and door.decider.last_source == "local" and central_answers(matcher) == 1
        actions = [e.action for e in site.data.audit.entries()]
        assert "site.matching.justify" in actions and "site.matching.revoke" in actions
    finally:
        door.close()
        matcher.stop()
        matcher.store.close()


def test_a_door_that_cannot_use_its_cache_does_not_fall_back_to_the_matcher_unjustified(site):
    matcher = start_matcher(site, central=False)
    door = open_door(site, "door-b", offline_config(mode="central", max_cache_age_s=60, sync_wait_ms=100),
                     threshold=0.4)
    try:
        assert door.sync.wait_current(10) and not door.sync.central_allowed
        door.sync.current.clear()
        door.cache.confirm_current(now=door.cache.confirmed_at - 3600)  # as if not confirmed for an hour
        subject, vector = next(iter(site.people.items()))
        decision = door.decider.request(request("door-b", probe_of(vector, site.rng)), PACK)
        assert not decision.accepted and decision.reason == messages.Reason.UNAVAILABLE
        assert door.decider.stats["central_not_justified"] >= 1 and central_answers(matcher) == 0
    finally:
        door.close()
        matcher.stop()
        matcher.store.close()
