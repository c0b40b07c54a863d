from __future__ import annotations

from cartpole_tui.env.events import RunFinished
from cartpole_tui.env.runtime.schedule import run_schedule


class FakeControl:
    """A network whose environment tells no STEPS (a third-party one) and plays Acrobot-like scores."""

    on_event = None

    def __init__(self, scores):
        self.scores = scores

    def begin_schedule(self, stop):
        pass

    def end_schedule(self, ending):
        pass

    def stop_run(self):
        pass

    def evolve(self):
        pass

    def start_run(self, episodes, deterministic, seed=None):
        return "r"

    def wait_run(self, idle_timeout):
        return RunFinished("r", sum(self.scores) / len(self.scores), len(self.scores), scores=list(self.scores))


def test_train_steps_never_negative_without_steps_told():
    result = run_schedule(FakeControl([-500.0, -500.0]), rounds=2, train=2, evaluate=2, final_eval=0, target=None)
    assert all(r.train_steps >= 0 for r in result.rounds), [r.train_steps for r in result.rounds]
