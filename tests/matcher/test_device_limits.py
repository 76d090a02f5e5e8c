"""What one device may send: the budgets' defaults come from the configuration, a token
bucket refills at its rate up to its burst, and a mute doubles for every mute in a row up to
the cap, never shorter than one window."""
from __future__ import annotations

import pytest

from appliance.config import MatcherConfig
from appliance.matcher.device_limits import Budget, Limits, TokenBucket
from appliance.protocol import topics


def test_the_defaults_come_from_the_configuration():
    config = MatcherConfig()
    assert Limits().requests == Budget(config.device_requests_per_s, config.device_request_burst)
    assert (Limits().rejects_per_window, Limits().window_s, Limits().mute_max_s) == (
        config.device_rejects_per_window, config.reject_window_s, config.device_mute_max_s)
    changed = Limits.from_config(MatcherConfig(device_requests_per_s=1.5, reject_window_s=60.0, device_mute_max_s=30))
    assert changed.requests.rate_per_s == 1.5 and changed.window_s == 60.0 and changed.mute_max_s == 30
    assert changed.budget(topics.REQUEST) is changed.requests and changed.budget(topics.DECISION) is None


def test_a_mute_doubles_for_every_mute_in_a_row_up_to_the_cap_and_never_below_one_window():
    limits = Limits(window_s=10.0, mute_max_s=640.0)
    assert [limits.mute_s(strikes) for strikes in range(1, 9)] == [10, 20, 40, 80, 160, 320, 640, 640]
    assert limits.mute_s(10_000) == 640.0  # no overflow however long it goes on
    short_cap = Limits(window_s=60.0, mute_max_s=30.0)
    assert short_cap.mute_s(1) == short_cap.mute_s(5) == 60.0  # a cap below the window never shortens the first


def test_a_token_bucket_starts_full_and_refills_at_its_rate_up_to_its_burst():
    budget = Budget(rate_per_s=2.0, burst=4)
    bucket = TokenBucket(budget, now=0.0)
    assert [bucket.take(budget, 0.0) for _ in range(5)] == [True] * 4 + [False]
    assert bucket.take(budget, 0.5) and not bucket.take(budget, 0.5)  # one token back in half a second
    assert not bucket.take(budget, 100.0, cost=5)  # never more than the burst, however long it waited
    assert bucket.take(budget, 100.0, cost=4)
    assert bucket.tokens == pytest.approx(0.0)
