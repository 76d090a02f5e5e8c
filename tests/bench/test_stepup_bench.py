"""The step-up timing simulation: the challenge's own judge, fed at the camera's frame rate."""
from __future__ import annotations

import random

from appliance.bench.stepup_bench import simulate
from appliance.edge.challenge_runner import ChallengeSettings
from appliance.liveness.challenge import draw_steps

SETTINGS = ChallengeSettings(minimum=1, maximum=3, step_timeout_s=4.0, max_delay_s=1.2)
FPS = 5.0


def test_a_cooperative_person_finishes_each_step_after_the_pause_and_the_reaction():
    for seed in range(20):
        steps = draw_steps(random.Random(seed), SETTINGS.minimum, SETTINGS.maximum, SETTINGS.step_timeout_s,
                           SETTINGS.max_delay_s)
        seconds = simulate(SETTINGS, FPS, 0.6, random.Random(seed))
        least = sum(step.delay_s for step in steps) + 0.6 * len(steps)
        assert least <= seconds <= least + len(steps) * 4 / FPS  # frame steps: prompt, neutral, act, open eyes


def test_a_presentation_that_never_answers_ends_at_the_first_timeout():
    steps = draw_steps(random.Random(3), SETTINGS.minimum, SETTINGS.maximum, SETTINGS.step_timeout_s,
                       SETTINGS.max_delay_s)
    seconds = simulate(SETTINGS, FPS, None, random.Random(3))
    assert steps[0].delay_s + SETTINGS.step_timeout_s < seconds <= steps[0].delay_s + SETTINGS.step_timeout_s + 2 / FPS
