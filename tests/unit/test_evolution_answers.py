"""EvolutionAnswers: which EVO_DONE answers the control client's request, without sockets."""

from cartpole_tui.env.components.evolution_answers import EvolutionAnswers
from cartpole_tui.env.wire import protocol


def evo_done(root: str | None, **fields) -> dict:
    message = {"STATUS": protocol.EVO_DONE, "SENT_BY": "evolution", **fields}
    if root is not None:
        message["ROOT_ID"] = root
    return message


def answers() -> tuple[EvolutionAnswers, list[str]]:
    watched: list[str] = []
    return EvolutionAnswers(watch_room=lambda: watched.append("evolution")), watched


def test_ours_echoes_the_request_and_a_repeat_is_stale():
    evolution, watched = answers()
    evolution.ask("a", now=10.0)
    answer = evolution.heard(evo_done("a", GENERATION=3), now=10.5, at=1000.0)
    assert answer is not None and answer is evolution.answer
    assert (answer.root_id, answer.generation, answer.seconds, answer.at) == ("a", 3, 0.5, 1000.0)
    assert evolution.heard(evo_done("a"), now=11.0, at=1001.0) is None
    assert evolution.stale == 1 and evolution.pending is None and watched == ["evolution"]  # from the first request


def test_an_answer_to_an_earlier_request_is_not_taken_for_the_pending_one():
    evolution, watched = answers()
    evolution.ask("a", now=0.0)
    evolution.ask("b", now=1.0)
    assert evolution.heard(evo_done("a"), now=1.1, at=0.0) is None
    assert evolution.pending == "b" and evolution.answer is None and watched == ["evolution"]  # once
    assert evolution.heard(evo_done("b"), now=1.2, at=0.0) is not None


def test_the_published_evolution_is_followed_in_its_room():
    # fresh random ROOT_IDs: the first is taken; then one counts only after its request's GET went by
    evolution, watched = answers()
    evolution.ask("a", now=0.0)
    assert watched == ["evolution"]  # the room is watched from the first request
    assert evolution.heard(evo_done("x1"), now=1.0, at=0.0) is not None
    evolution.ask("b", now=2.0)
    # a trailing answer to "a" before anything of "b" went by in the evolution room
    assert evolution.heard(evo_done("x2"), now=2.1, at=0.0) is None
    evolution.seen_in_room({"ROOT_ID": "a", "CMD": "GET"})  # not the pending request's GET
    assert evolution.heard(evo_done("x3"), now=2.2, at=0.0) is None
    evolution.seen_in_room({"ROOT_ID": "b", "CMD": "GET"})
    answer = evolution.heard(evo_done("x4"), now=2.3, at=0.0)
    assert answer is not None and answer.root_id == "x4"
    assert watched == ["evolution"] and evolution.stale == 2


def test_after_a_time_out_a_late_answer_answers_nothing():
    evolution, _ = answers()
    evolution.ask("a", now=0.0)
    evolution.give_up()
    assert evolution.heard(evo_done("a"), now=40.0, at=0.0) is None
    assert evolution.answer is None and evolution.stale == 1 and evolution.last_heard == 40.0


def test_the_sender_is_data():
    evolution, _ = answers()
    evolution.ask("a", now=0.0)
    answer = evolution.heard({**evo_done("a"), "SENT_BY": "evo\x1b[31mlution"}, now=0.1, at=0.0)
    assert answer is not None and "\x1b" not in answer.sent_by
    evolution.ask("b", now=1.0)
    answer = evolution.heard({**evo_done("b"), "SENT_BY": ["not", "a", "name"]}, now=1.1, at=0.0)
    assert answer is not None and answer.sent_by == "?"


def test_a_pools_weights_in_one_message_count_every_model_and_a_set_none():
    evolution, _ = answers()
    evolution.ask("a", now=0.0)
    evolution.seen_in_room({"ROOT_ID": "a", "CMD": "GET", "BATCH_WEIGHTS": True})
    evolution.seen_in_room({"ROOT_ID": "a", "COMPONENT_IDS": ["m1", "m2", "m3"], "BATCH_WEIGHTS": "AAAA"})
    evolution.seen_in_room({"ROOT_ID": "a", "COMPONENT_ID": "p", "WEIGHTS": [0.0]})
    evolution.seen_in_room({"ROOT_ID": "a", "CMD": "SET", "COMPONENT_IDS": ["x"], "BATCH_WEIGHTS": "AAAA"})
    assert evolution.silence(5) == (
        "the evolution answered GET with 4 WEIGHTS but no CONTRIBUTION (is the aggregation running?)"
        " and no EVO_DONE in 5s"
    )
