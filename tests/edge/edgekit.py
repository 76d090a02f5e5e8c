"""Helpers for the edge tests: a decider that needs no broker."""
from __future__ import annotations

from appliance.protocol import messages


class FakeDecider:
    """Stands in for the matcher link or the cache decider: records requests, answers as told."""

    def __init__(self, *answers: messages.Decision | Exception, display_name: str = "S**** T**"):
        self.answers = list(answers)
        self.display_name = display_name
        self.requests: list[tuple[messages.MatchRequest, tuple[str, str]]] = []

    def request(self, request: messages.MatchRequest, pack: tuple[str, str]) -> messages.Decision:
        self.requests.append((request, pack))
        answer = self.answers.pop(0) if self.answers else None
        if isinstance(answer, Exception):
            raise answer
        return answer or messages.Decision(request_id=request.request_id, accepted=True, reason=messages.Reason.MATCH,
                                           display_name=self.display_name)
