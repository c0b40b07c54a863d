"""EnvironmentLogic: the seed's run accounting on gymnasium, without sockets."""

import pytest

from cartpole_tui.env.components.environment import EnvironmentLogic
from cartpole_tui.env.events import EnvironmentObserver
from cartpole_tui.env.wire import protocol


def balancing_action(obs) -> int:
    """A hand-written controller that keeps CartPole up (pushes toward the fall)."""
    return int(obs[2] + 0.5 * obs[3] > 0)


class Recorder(EnvironmentObserver):
    def __init__(self):
        self.episodes, self.runs, self.steps = [], [], 0

    def on_step(self, observation, reward, done):
        self.steps += 1

    def on_episode(self, event):
        self.episodes.append(event)

    def on_run_finished(self, event):
        self.runs.append(event)


def play(logic, policy, run_id, max_steps=100_000):
    """Drive a started run to its end the way the network would; returns control messages."""
    sent = []
    obs = logic.last_payload["OBSERVATION"]
    for _ in range(max_steps):
        control, payload = logic.step({"ACTION": [policy(obs)], "ROOT_ID": run_id})
        sent += control
        if any(m.get("STATUS") == protocol.ENV_DONE for m in control):
            return sent
        obs = payload["OBSERVATION"]
    raise AssertionError("run did not end")


@pytest.fixture
def logic():
    instance = EnvironmentLogic(seed=3)
    instance.recorder = Recorder()
    instance.observers.append(instance.recorder)
    return instance


def start(logic, episodes, deterministic=False):
    message = protocol.start_run(episodes, deterministic)
    control, payload = logic.start(message)
    logic.last_payload = payload
    return message["RUN_ID"], control, payload


def test_first_observation_carries_run_id_and_flag(logic):
    run_id, control, payload = start(logic, 2, deterministic=True)
    # the only control message is the run's announcement (no NR_OF_EPISODE: never taken for a start)
    assert [m["STATUS"] for m in control] == [protocol.RUN_STARTED] and not protocol.is_start(control[0])
    assert len(payload["OBSERVATION"]) == 4 and payload["DETERMINISTIC"] is True
    assert payload["ROOT_ID"] == f"{run_id}:1"  # the run and the observation's number in it
    assert "REWARD" not in payload


def test_run_accounting_matches_the_seed(logic):
    run_id, _, _ = start(logic, 5)
    sent = play(logic, lambda obs: 0, run_id)
    episodes = [m for m in sent if m["STATUS"] == protocol.EPISODE_DONE]
    done = [m for m in sent if m["STATUS"] == protocol.ENV_DONE]
    assert [m["EPISODE"] for m in episodes] == [1, 2, 3, 4, 5]
    assert len(done) == 1 and done[0]["TO_ROOM"] == protocol.CONTROL
    scores = [m["SCORE"] for m in episodes]
    assert done[0]["AVG_SCORE"] == pytest.approx(sum(scores) / 5)
    assert all(m["SCORE"] == m["STEPS"] for m in episodes)  # reward 1 a step
    assert logic.run is None
    assert logic.recorder.runs[0].steps == sum(m["STEPS"] for m in episodes)


def test_truncation_at_500_ends_an_episode(logic):
    run_id, _, _ = start(logic, 1)
    sent = play(logic, balancing_action, run_id)
    episode = next(m for m in sent if m["STATUS"] == protocol.EPISODE_DONE)
    assert episode["SCORE"] == 500 and episode["STEPS"] == 500


def test_reply_on_the_step_that_ends_an_episode_is_the_next_episodes_first(logic):
    run_id, _, _ = start(logic, 3)
    while True:
        _, payload = logic.step({"ACTION": [0], "ROOT_ID": run_id})
        if payload["DONE"]:
            break
    assert payload["REWARD"] == 1.0 and payload["ACTION"] == [0]
    assert abs(payload["OBSERVATION"][2]) < 0.06  # a fresh pole, not a fallen one


def test_stop_ends_the_run_over_finished_episodes(logic):
    run_id, _, _ = start(logic, 1000)
    while len(logic.recorder.episodes) < 3:
        logic.step({"ACTION": [0], "ROOT_ID": run_id})
    [done] = logic.stop()
    assert done["STATUS"] == protocol.ENV_DONE and done["STOPPED"] is True and done["EPISODES"] == 3
    assert done["AVG_SCORE"] == pytest.approx(sum(e.score for e in logic.recorder.episodes) / 3)
    assert logic.stop() == []  # nothing running any more
    assert logic.step({"ACTION": [0], "ROOT_ID": run_id}) == ([], None)


@pytest.mark.parametrize(
    "action, reason",
    [
        (None, "missing"),
        ([], "list of one"),
        ([2], "out of range"),
        ([-1], "out of range"),
        (["1"], "hold an int"),
        ([True], "hold an int"),
        (1, "list of one"),
        ([0.5], "hold an int"),
    ],
)
def test_bad_action_is_reported_and_changes_nothing(logic, action, reason):
    run_id, _, _ = start(logic, 2)
    message = {"ROOT_ID": run_id, "SENT_BY": "agg"}
    if action is not None:
        message["ACTION"] = action
    state_before = logic.env.unwrapped.state.copy()
    control, payload = logic.step(message)
    assert payload is None
    assert control[0]["STATUS"] == protocol.ENV_ERROR and reason in control[0]["ERROR"]
    assert "agg" in control[0]["ERROR"]
    assert (logic.env.unwrapped.state == state_before).all()
    assert logic.run.steps == 0
    _, payload = logic.step({"ACTION": [1], "ROOT_ID": run_id})
    assert payload is not None and logic.run.steps == 1


def test_action_from_an_earlier_run_is_dropped_and_counted(logic):
    old_run, _, _ = start(logic, 10)
    new_run, control, _ = start(logic, 10)  # replaces the running one
    assert control[0]["STATUS"] == protocol.ENV_DONE and control[0]["RUN_ID"] == old_run
    assert logic.step({"ACTION": [0], "ROOT_ID": old_run}) == ([], None)
    assert logic.stale_actions == 1 and logic.run.steps == 0
    assert logic.step({"ACTION": [0], "ROOT_ID": new_run})[1] is not None


def test_action_without_root_id_is_accepted_like_the_published_one(logic):
    start(logic, 1)
    assert logic.step({"ACTION": [1]})[1] is not None


@pytest.mark.parametrize("bad", [0, -3, "5", 2.5, True, None])
def test_bad_start_is_refused(logic, bad):
    with pytest.raises(protocol.ProtocolError):
        logic.start({"NR_OF_EPISODE": bad, "DETERMINISTIC": False})
    assert logic.run is None


def test_same_seed_same_episodes():
    def scores(seed):
        logic = EnvironmentLogic(seed=seed)
        rec = Recorder()
        logic.observers.append(rec)
        logic.last_payload = logic.start(protocol.start_run(3, False))[1]
        play(logic, lambda obs: int(obs[0] > 0), logic.run.run_id)
        return [e.score for e in rec.episodes]

    assert scores(7) == scores(7)
    assert scores(7) != scores(8)


def test_non_discrete_env_is_refused():
    with pytest.raises(ValueError, match="Discrete actions"):
        EnvironmentLogic("Pendulum-v1")


def test_the_run_is_announced_and_its_state_answered(logic):
    """RUN_STARTED names the run's true size; RUN_STATE says how far it is, scores bounded."""
    logic.history = ("host", "/tmp/runs.db")
    run_id, control, _ = start(logic, 3, deterministic=True)
    facts = protocol.parse_run_facts(control[0])
    assert facts["run_id"] == run_id and facts["episodes"] == 3 and facts["deterministic"] is True
    assert facts["seed"] == 3 and facts["instances"] == 1 and facts["history"] == ("host", "/tmp/runs.db")
    logic.run.recent.extend((n + 1, float(n), n, 1e9 + n) for n in range(protocol.MAX_STATE_SCORES + 5))
    state = logic.state()
    assert state["STATUS"] == protocol.RUN_STATE and protocol.parse_run_facts(state)["run_id"] == run_id
    finished, _, scores = protocol.parse_run_progress(state)
    assert finished == 0 and len(scores) == protocol.MAX_STATE_SCORES and scores[-1] == protocol.MAX_STATE_SCORES + 4
    numbers, steps, ended = protocol.parse_score_episodes(state, len(scores))
    assert numbers[-1] == protocol.MAX_STATE_SCORES + 5 and steps[-1] == protocol.MAX_STATE_SCORES + 4
    assert ended[-1] == 1e9 + protocol.MAX_STATE_SCORES + 4
    assert protocol.parse_finished_figures(state, finished) == (None, 0)  # no episode finished yet
    logic.stop()
    assert logic.state()["RUN_ID"] is None


@pytest.mark.parametrize(
    "change",
    [
        {"EPISODES": 0},
        {"EPISODES": True},
        {"INSTANCES": 10**6},
        {"SEED": -1},
        {"STARTED": float("inf")},
        {"RUN_ID": "x" * 65},
        {"ENV_ID": 5},
        {"DETERMINISTIC": "yes"},
    ],
)
def test_run_facts_out_of_range_are_refused(logic, change):
    _, control, _ = start(logic, 3)
    with pytest.raises(protocol.ProtocolError):
        protocol.parse_run_facts({**control[0], **change})


def test_run_state_episode_numbers_are_checked():
    """SCORE_EPISODES (added) names each of SCORES' episodes once; an older RUN_STATE has none."""
    good = {"SCORES": [10.0, 20.0], "SCORE_EPISODES": [7, 3], "SCORE_STEPS": [10, 20], "SCORE_ENDED": [5.0, 6.0]}
    assert protocol.parse_score_episodes(good, 2, 10) == ((7, 3), (10, 20), (5.0, 6.0))
    assert protocol.parse_score_episodes({"SCORES": [10.0]}, 1) is None
    bad_ones = ({"SCORE_EPISODES": [7, 7]}, {"SCORE_EPISODES": [7, 11]}, {"SCORE_EPISODES": [7]}, {"SCORE_STEPS": [1]})
    for bad in (*bad_ones, {"SCORE_ENDED": [5.0, -1.0]}, {"SCORE_ENDED": [5.0]}):
        with pytest.raises(protocol.ProtocolError):
            protocol.parse_score_episodes({**good, **bad}, 2, 10)


def test_run_state_tells_its_finished_episodes_best_and_steps():
    """BEST and FINISHED_STEPS (added): the run's own figures, not those of the scores it carries."""
    logic = EnvironmentLogic(seed=1)
    start(logic, 5)
    for _ in range(200):  # a random policy ends CartPole episodes within tens of steps
        logic.step({"ACTION": [0], "ROOT_ID": logic.awaiting})
        if logic.run is None or logic.run.finished_episodes >= 2:
            break
    run = logic.run
    assert run is not None and run.finished_episodes == 2
    state = logic.state()
    assert protocol.parse_finished_figures(state, 2) == (max(s for _, s, _, _ in run.recent), run.finished_steps)
    assert run.finished_steps == sum(n for _, _, n, _ in run.recent) <= run.steps
    assert protocol.parse_finished_figures({"SCORES": []}, 2) is None  # an older environment's
    with pytest.raises(protocol.ProtocolError):
        protocol.parse_finished_figures({**state, "FINISHED_STEPS": -1}, 2)


def test_run_state_scores_are_checked():
    good = {"FINISHED": 2, "STEPS": 30, "SCORES": [10.0, 20.0]}
    assert protocol.parse_run_progress(good) == (2, 30, [10.0, 20.0])
    for bad in ({"SCORES": [float("nan")]}, {"SCORES": [0.0] * 1001}, {"FINISHED": -1}, {"STEPS": "9"}):
        with pytest.raises(protocol.ProtocolError):
            protocol.parse_run_progress({**good, **bad})


@pytest.mark.parametrize("vectorised", [False, True])
def test_a_start_reusing_an_earlier_runs_id_is_refused_on_both_paths(vectorised):
    """Issue 17 (b): an earlier run's RUN_ID, played here or held by the history, starts nothing."""
    from cartpole_tui.env.components.vector_env import VectorLogic

    logic = EnvironmentLogic(seed=1)
    start = (lambda message: VectorLogic(logic).start(message, 4)) if vectorised else logic.start
    played, recorded = protocol.new_id(), protocol.new_id()
    logic.recorded = lambda run_id: run_id == recorded
    start(protocol.start_run(3, False, run_id=played))
    logic.stop()
    for run_id in (played, recorded):
        with pytest.raises(protocol.ProtocolError, match="is an earlier run's"):
            start(protocol.start_run(3, False, run_id=run_id))
        assert logic.run is None  # nothing began, nothing was stopped
    start(protocol.start_run(3, False, run_id=protocol.new_id()))
    assert logic.run is not None and logic.run.run_id not in (played, recorded)


@pytest.mark.parametrize("ended_at", [float("inf"), -1.0, True, "now", 2e12])
def test_an_episode_done_with_a_bad_end_time_is_refused(ended_at):
    message = protocol.episode_done("r1", 1, 9.0, 9, 1.7e9)
    assert protocol.parse_episode_done(message) == ("r1", 1, 9.0, 9, 1.7e9)
    assert protocol.parse_episode_done({**message, "ENDED_AT": None})[4] is None  # the published one has none
    with pytest.raises(protocol.ProtocolError, match="ENDED_AT"):
        protocol.parse_episode_done({**message, "ENDED_AT": ended_at})
    done = protocol.env_done(9.0, "r1", 1, ended_at=1.7e9)
    assert protocol.parse_env_done(done) == ("r1", 9.0, 1, False, 1.7e9)
    with pytest.raises(protocol.ProtocolError, match="ENDED_AT"):
        protocol.parse_env_done({**done, "ENDED_AT": ended_at})
