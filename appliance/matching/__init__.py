"""Gallery search, decision rules and failure limits: one concept, used on both sides.

The matcher decides over its in-memory gallery of every enrolled subject, a door over its
cache (offline and local matching); both use the same ``MatchEngine``, so a decision means
the same wherever it is made. Pure: no transport, no stores, the caller gives the time.
"""
from appliance.matching.decisions import MatchEngine, Verdict
from appliance.matching.gallery import Candidate, Gallery
from appliance.matching.limits import BACKOFF_S, MAX_CONSECUTIVE_FAILURES, FailureTracker

__all__ = ["BACKOFF_S", "MAX_CONSECUTIVE_FAILURES", "Candidate", "FailureTracker", "Gallery", "MatchEngine",
           "Verdict"]
