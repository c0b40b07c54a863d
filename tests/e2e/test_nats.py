"""Gateway mode: three brokers, one per node of a real 3-node NATS cluster on loopback.

The environment sits on gateway A, the swarm on B, the control side (ControlClient, or the
app under Pilot) and an unmodified swergio 0.0.2 client on C, as a network spread over
three machines would be.
"""

from __future__ import annotations

import io
import queue
import re
import subprocess
import sys

import pytest
import swergio
from rich.console import Console
from swergio import MESSAGE_TYPE, Trigger

from cartpole_tui.env import defaults
from cartpole_tui.env.components.control import ControlClient, ControlTimeout
from cartpole_tui.env.components.environment import EnvironmentComponent
from cartpole_tui.env.events import EpisodeFinished
from cartpole_tui.env.history.recorder import StoreRecorder
from cartpole_tui.env.history.store import RunStore
from cartpole_tui.env.runtime.schedule import run_schedule
from cartpole_tui.env.runtime.session import SessionOptions
from cartpole_tui.env.swarm.swarm import Swarm
from cartpole_tui.env.wire import protocol, subjects
from cartpole_tui.env.wire.broker import Broker
from cartpole_tui.env.wire.gateway import NatsRelay
from cartpole_tui.env.wire.nats_bridge import NatsUnavailable
from cartpole_tui.env.wire.transport import Component
from cartpole_tui.tui.app import ControlRoomApp
from cartpole_tui.tui.cli.parser import main
from tests.nats_cluster import NatsCluster, free_ports

from conftest import screen_text, start_swergio_client, wait_for

HOST = "127.0.0.1"
NETWORK = "cartpole"
CUSTOM = MESSAGE_TYPE.DATA.CUSTOM


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    with NatsCluster(3, str(tmp_path_factory.mktemp("nats"))) as instance:
        yield instance


@pytest.fixture
def fresh_cluster(tmp_path):
    """A cluster of its own, for a test that kills a node."""
    with NatsCluster(3, str(tmp_path)) as instance:
        yield instance


def start_gateways(cluster: NatsCluster, network: str = NETWORK) -> list[Broker]:
    """Gateways A, B, C: a broker each, connected to nodes 0, 1, 2 (the rest found from the cluster)."""
    return [Broker(HOST, 0, relay=NatsRelay([cluster.url(i)], network).start(5)).start() for i in range(3)]


def stop_gateways(brokers: list[Broker]) -> None:
    for broker in brokers:
        broker.stop()
        broker.relay.close()


@pytest.fixture
def gateways(cluster):
    brokers = start_gateways(cluster)
    yield brokers
    stop_gateways(brokers)


class Closer:
    """Something with a ``close()`` for ``closing``, made of a function."""

    def __init__(self, function):
        self.close = function


def heard(broker: Broker, room: str, members: int) -> bool:
    """Whether ``broker`` knows of ``members`` members of ``room`` on the other gateways. Their stats
    come over the same NATS connection as their subscriptions, after them: once heard, delivery holds."""
    return broker.relay.remote_members(room) >= members


def spread_network(
    brokers, closing, models: int = 4, seed: int = 7, store: RunStore | None = None, on_event=None
) -> ControlClient:
    """Environment on A, swarm on B, control on C (or all on one broker when given one)."""
    a, b, c = brokers if len(brokers) == 3 else brokers * 3
    env = EnvironmentComponent(HOST, a.port, seed=seed)
    if store is not None:
        env.add_observer(StoreRecorder(store, defaults.ENV_ID, a.address))
    closing(env.start())
    closing(Swarm(HOST, b.port, models=models, seed=seed).start())
    control = ControlClient(HOST, c.port, on_event=on_event)
    closing(control)
    if len(brokers) == 3:
        wait_for(
            lambda: (
                heard(a, protocol.OBSERVATION, 1)  # the models, on B
                and heard(a, protocol.CONTROL, 2)  # evolution on B, control on C
                and heard(b, protocol.ACTION, 1)  # the environment, on A
                and heard(b, protocol.EVOLUTION, 0)
                and heard(c, protocol.CONTROL, 2)
            ),  # environment on A, evolution on B
            10,
            "every gateway to hear of the others' members",
        )
    else:
        wait_for(lambda: len(a.stats()["clients"]) == 5, 5, "the network to join")
    return control


def play(control: ControlClient) -> list[list[float]]:
    """A seeded training run, an evolution, a seeded deterministic run: their scores."""
    scores = [control.run(8, False, seed=11).scores]
    control.evolve(timeout=10)
    scores.append(control.run(3, True, seed=12).scores)
    return scores


def test_a_seeded_network_over_three_gateways_scores_as_through_one_broker(broker, cluster):
    items: list = []
    try:
        alone = play(spread_network([broker], items.append))
    finally:
        for item in reversed(items):
            item.close()
    assert len(alone[0]) == 8 and len(alone[1]) == 3
    brokers = start_gateways(cluster)
    items = []
    try:
        control = spread_network(brokers, items.append)
        assert play(control) == alone
        rounds = []
        result = run_schedule(control, rounds=3, train=4, evaluate=2, on_round=rounds.append, final_eval=2, target=None)
        assert [r.round for r in rounds] == [1, 2, 3] and all(r.evolved for r in rounds)
        assert result.final_eval_avg > 0
    finally:
        for item in reversed(items):
            item.close()
        stop_gateways(brokers)


def test_rooms_and_to_reach_every_gateway_once_and_never_the_sender(gateways, closing):
    a, b, c = gateways
    inbox: queue.Queue = queue.Queue()
    plain = swergio.Client("plain", HOST, c.port, "utf-8", 10)  # unmodified swergio 0.0.2 on C
    plain.add_eventHandler(lambda msg: inbox.put(("plain", msg)), CUSTOM, trigger=Trigger(CUSTOM, "chat"))
    start_swergio_client(plain)
    closing(plain.client)  # its socket
    for who, broker in (("near", a), ("other", b), ("far", c)):
        component = Component(who, HOST, broker.port)
        component.add_eventHandler(lambda msg, who=who: inbox.put((who, msg)), None, trigger=Trigger(CUSTOM, "chat"))
        closing(component.start())
        if who == "near":
            near = component
        elif who == "other":
            other = component
    wait_for(lambda: heard(a, "chat", 3) and heard(b, "chat", 3), 10, "the chat room on every gateway")

    near.send(protocol.custom(None, TO="far", TEXT="direct"))  # swergio 0.0.2's client needs a TO_ROOM
    for text in ("r1", "r2", "r3"):
        near.send(protocol.custom("chat", TEXT=text))
    other.send(protocol.custom("chat", TEXT="from B"))
    got = [inbox.get(timeout=5) for _ in range(13)]
    seen = sorted((who, msg["TEXT"], msg["SENT_BY"]) for who, msg in got)
    room = [("r1", "near"), ("r2", "near"), ("r3", "near")]
    assert seen == sorted(
        [("far", "direct", "near"), ("far", "from B", "other"), ("near", "from B", "other")]
        + [("far", *m) for m in room]
        + [("plain", "from B", "other"), *(("plain", *m) for m in room)]
        + [("other", *m) for m in room]
    )
    for who in ("far", "plain", "other"):  # per sender and room, in the order sent
        assert [msg["TEXT"] for w, msg in got if w == who and msg["TEXT"][0] == "r"] == ["r1", "r2", "r3"]
    with pytest.raises(queue.Empty):  # nothing came back to its sender, nothing twice
        inbox.get(timeout=0.3)


def test_one_senders_order_holds_across_a_room_and_its_name(gateways, closing):
    a, _, c = gateways
    got: queue.Queue = queue.Queue()
    far = Component("far", HOST, c.port)
    far.add_eventHandler(lambda msg: got.put(msg["N"]), None, trigger=Trigger(CUSTOM, "chat"))
    closing(far.start())
    near = Component("near", HOST, a.port)
    closing(near.start())
    wait_for(lambda: heard(a, "chat", 1) and "far" in a.relay.remote_clients(), 10, "far to be heard of")
    for n in range(400):  # alternately to the room and to far by name, as fast as they go
        near.send(protocol.custom("chat" if n % 2 else None, N=n, **({} if n % 2 else {"TO": "far"})))
    assert [got.get(timeout=5) for _ in range(400)] == list(range(400))


def test_networks_with_other_names_share_the_cluster_but_not_rooms(gateways, cluster, closing):
    other_network = start_gateways(cluster, "other network")
    closing(Closer(lambda: stop_gateways(other_network)))
    inbox: queue.Queue = queue.Queue()
    ours = Component("ours", HOST, gateways[1].port)
    ours.add_eventHandler(inbox.put, None, trigger=Trigger(CUSTOM, "chat"))
    closing(ours.start())
    theirs = Component("theirs", HOST, other_network[1].port)
    theirs.add_eventHandler(inbox.put, None, trigger=Trigger(CUSTOM, "chat"))
    closing(theirs.start())
    wait_for(lambda: heard(gateways[0], "chat", 1) and heard(other_network[0], "chat", 1), 10, "both chat rooms")
    sender = Component("sender", HOST, gateways[0].port)
    closing(sender.start())
    sender.send(protocol.custom("chat", TEXT="ours only"))
    assert inbox.get(timeout=5)["SENT_BY"] == "sender"
    with pytest.raises(queue.Empty):
        inbox.get(timeout=0.3)
    assert not heard(gateways[0], "chat", 2)  # the other network's member is not counted here


def test_frames_over_the_nats_payload_cap_are_dropped_and_counted(gateways, caplog):
    bridge = gateways[0].relay.bridge
    assert not bridge.publish(subjects.subject(NETWORK, subjects.ROOM, "big"), b"x" * (bridge.max_payload + 1))
    assert bridge.dropped == 1
    assert "NATS: 1 frames could not be sent so far" in caplog.text


def test_frames_from_other_nats_clients_that_are_not_frames_are_refused(gateways, closing):
    relay = gateways[0].relay
    peer = NatsRelay([relay.bridge.servers[0]], NETWORK).start(5)
    closing(peer)
    inbox: queue.Queue = queue.Queue()
    member = Component("member", HOST, gateways[0].port)
    member.add_eventHandler(inbox.put, None, trigger=Trigger(CUSTOM, "chat"))
    closing(member.start())
    wait_for(lambda: gateways[0].stats()["rooms"].get("chat", None), 5, "the member to join")
    wait_for(lambda: relay.bridge.received, 5, "the first stats")  # our subscriptions are in place
    room = subjects.subject(NETWORK, subjects.ROOM, "chat")
    peer.publish("room", "chat", b"not a frame")
    peer.publish("room", "chat", protocol.encode_frame(protocol.custom("chat", TEXT="fine")) + b"trailing")
    peer.publish("room", "chat", protocol.encode_frame(protocol.custom("chat", TEXT="fine", SENT_BY="peer")))
    assert inbox.get(timeout=5)["TEXT"] == "fine"
    assert relay.refused == 2 and room


async def test_the_network_pane_lists_every_gateways_components(gateways, closing, tmp_path):
    a, b, c = gateways
    closing(EnvironmentComponent(HOST, a.port, seed=3).start())
    closing(Swarm(HOST, b.port, models=2, seed=3).start())
    far = swergio.Client("far", HOST, c.port, "utf-8", 10)
    start_swergio_client(far)
    closing(far.client)
    options = SessionOptions(connect=f"{HOST}:{c.port}", embed_env=False, seed=3)
    app = ControlRoomApp(options, db_path=str(tmp_path / "runs.sqlite3"))
    async with app.run_test(size=(120, 40)) as pilot:
        want = "aggregation, control, environment, evolution, far, models"  # the names, under "6 clients, …"
        for _ in range(300):
            if "6 clients" in screen_text(app) and "6 clients" in pane_text(app) and want in pane_text(app):
                break
            await pilot.pause(0.05)
        else:
            raise AssertionError(f"the network pane did not list every gateway's clients:\n{pane_text(app)}")
        assert "│ 6 clients │" in screen_text(app)  # the status line counts the whole network
        # a room with no member on C: its members on A (the environment) and B (the models), summed
        assert "observation 2 " in pane_text(app)


def pane_text(app) -> str:
    """The network pane's whole table as text (at the default height its caption is below the fold)."""
    console = Console(width=38, record=True, file=io.StringIO())
    console.print(app.main.network.content)
    return " ".join(console.export_text().split())  # the caption wraps at the pane's width


def test_killing_the_nats_node_under_b_mid_run(fresh_cluster, closing, tmp_path):
    brokers = start_gateways(fresh_cluster)
    closing(Closer(lambda: stop_gateways(brokers)))
    b = brokers[1]
    store = RunStore.open(str(tmp_path / "runs.sqlite3"))
    closing(store)
    events: list = []
    control = spread_network(brokers, closing, models=4, store=store, on_event=events.append)

    def finished() -> int:
        return sum(isinstance(event, EpisodeFinished) for event in list(events))

    run_id = control.start_run(5000, False, seed=5)
    wait_for(lambda: finished() >= 5, 20, "the run to get going")
    killed = fresh_cluster.url(1).removeprefix("nats://")
    assert b.relay.bridge.connected_url == killed
    fresh_cluster.kill(1)
    wait_for(
        lambda: b.relay.bridge.reconnects == 1 and b.relay.bridge.connected_url not in (None, killed),
        5,
        "gateway B to reconnect to another NATS node",
    )
    at_reconnect = finished()
    try:  # the run goes on, unless a step was in flight to the killed node
        wait_for(lambda: finished() >= at_reconnect + 20, 5, "the run to go on")
    except AssertionError:
        with pytest.raises(ControlTimeout, match="no episode finished for 2s"):  # failed, with its reason
            control.wait_run(idle_timeout=2)
    control.stop_run()
    result = control.wait_run(idle_timeout=10)
    assert result.stopped and result.episodes >= finished() >= 5
    assert store.flush()
    record = next(r for r in store.runs() if r.run_uid == run_id)
    assert [e.index for e in store.episodes(run_id)] == list(range(1, result.episodes + 1))
    assert record.state == "stopped"


def test_an_unreachable_nats_is_one_line_and_exit_1(capsys):
    urls = ",".join(f"nats://{HOST}:{port}" for port in free_ports(2))
    assert main(["broker", "--port", "0", "--nats", urls]) == 1
    err = capsys.readouterr().err
    assert err.startswith("cartpole-tui: cannot reach NATS at nats://127.0.0.1:") and err.count("\n") == 1


def test_a_gateway_user_with_a_password_and_the_networks_subjects_only(tmp_path, closing):
    users = (
        'authorization { users = [{user: gateway, password: "s3cret", '
        'permissions: {publish: "swergio.lab.>", subscribe: "swergio.lab.>"}}] }'
    )
    node = NatsCluster(1, str(tmp_path), extra=users).start()
    closing(Closer(node.stop))  # closed last: after the gateways
    with_password = node.url(0).replace("nats://", "nats://gateway:s3cret@")
    with pytest.raises(
        NatsUnavailable, match=re.escape("cannot reach NATS at nats://gateway:***@127.0.0.1:")
    ) as refused:
        NatsRelay([node.url(0).replace("nats://", "nats://gateway:wrong@")], "lab").start(5)
    assert "wrong" not in str(refused.value)  # the password is never shown
    brokers = [Broker(HOST, 0, relay=NatsRelay([with_password], "lab").start(5)).start() for _ in range(2)]
    closing(Closer(lambda: stop_gateways(brokers)))
    inbox: queue.Queue = queue.Queue()
    listener = Component("listener", HOST, brokers[1].port)
    listener.add_eventHandler(inbox.put, None, trigger=Trigger(CUSTOM, "chat"))
    closing(listener.start())
    wait_for(lambda: heard(brokers[0], "chat", 1), 10, "the listener's gateway to be heard of")
    speaker = Component("speaker", HOST, brokers[0].port)
    closing(speaker.start())
    speaker.send(protocol.custom("chat", TEXT="allowed"))
    assert inbox.get(timeout=5)["TEXT"] == "allowed"


def test_seed_list_with_a_dead_first_server_connects_to_a_live_one(cluster):
    dead = f"nats://{HOST}:{free_ports(1)[0]}"
    relay = NatsRelay([dead, cluster.url(2)], NETWORK).start(5)
    try:
        assert relay.bridge.connected_url == cluster.url(2).removeprefix("nats://")
    finally:
        relay.close()


def test_two_cli_gateways_carry_a_room(cluster, closing):
    ports = free_ports(2)
    for i, port in enumerate(ports):
        gateway = ["broker", "--port", str(port), "--nats", cluster.url(i), "--network", "cli"]
        child = subprocess.Popen(
            [sys.executable, "-m", "cartpole_tui", *gateway],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        closing(Closer(lambda child=child: (child.terminate(), child.wait(10))))
        line = child.stdout.readline()
        assert f"broker listening on 127.0.0.1:{port} (gateway of network 'cli' on NATS 127.0.0.1:" in line
    inbox: queue.Queue = queue.Queue()
    listener = Component("listener", HOST, ports[1])
    listener.add_eventHandler(inbox.put, None, trigger=Trigger(CUSTOM, "chat"))
    closing(listener.start())
    speaker = Component("speaker", HOST, ports[0])
    closing(speaker.start())
    for _ in range(100):  # until the listener's gateway has subscribed and the cluster knows it
        speaker.send(protocol.custom("chat", TEXT="hello"))
        try:
            assert inbox.get(timeout=0.1)["SENT_BY"] == "speaker"
            break
        except queue.Empty:
            continue
    else:
        raise AssertionError("no message crossed the two gateways")


def test_the_embedded_default_does_not_import_nats():
    code = (
        "import sys; from cartpole_tui.tui.cli import parser, commands; "
        "from cartpole_tui.env.runtime import network; "
        "assert parser.build_parser().parse_args([]).command is None; "
        "print(sorted(m for m in sys.modules if m == 'nats' or m.startswith('nats.')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
