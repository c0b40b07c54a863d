"""The broker under issue 17's attacks: deep frames, silent and crowding connections, token
guessing, a claimed SENT_BY, and a loop that dies. Each test failed before its fix.

After each attack two fresh clients must still exchange a message (``still_routes``).
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time

import pytest
from hypothesis import HealthCheck, given, settings
from swergio import MESSAGE_TYPE, Trigger
from test_broker import wait_members

from cartpole_tui.env import defaults
from cartpole_tui.env.wire import protocol
from cartpole_tui.env.wire.broker import Broker
from cartpole_tui.env.wire.transport import Component
from tests.hostile import FRAMES, Raw, nested, still_routes

from conftest import free_port, wait_for

HOST = "127.0.0.1"
OTHER_HOST = "127.0.0.2"  # loopback too: another address for the broker's per-address rules
CLI = os.path.join(os.path.dirname(sys.executable), "cartpole-tui")
TOKEN = "issue-17-" + "t" * 24
CUSTOM = MESSAGE_TYPE.DATA.CUSTOM


def connect_from(host: str, port: int) -> socket.socket:
    sock = socket.socket()
    sock.bind((host, 0))
    sock.settimeout(5)
    sock.connect((HOST, port))
    return sock


def closed_by_broker(sock: socket.socket) -> bool:
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True


# --- 1. one deep frame stops the broker ------------------------------------------------------------


def deep_frame(how: str, depth: int) -> bytes:
    deep = "[" * depth + "]" * depth
    bodies = {
        "forward to _logging": f'{{"TYPE":"{protocol.FORWARD}","TO_ROOM":"r","X":{deep}}}',
        "gradient to _logging": f'{{"TYPE":"{protocol.GRADIENT}","TO_ROOM":"r","X":{deep}}}',
        "census with a deep ID": f'{{"TYPE":"{protocol.COMMAND_CUSTOM}","CENSUS":[],"ID":{deep}}}',
        "register with a token": f'{{"TYPE":"{protocol.REGISTER}","NAME":"deep","TOKEN":"x","X":{deep}}}',
        "a claimed SENT_BY": f'{{"TYPE":"{protocol.CUSTOM}","TO_ROOM":"r","SENT_BY":"environment","X":{deep}}}',
    }
    return protocol.frame_bytes(bodies[how].encode())


DEEP_WAYS = ["forward to _logging", "gradient to _logging", "census with a deep ID", "register with a token"]


@pytest.mark.timeout(60)
@pytest.mark.parametrize("how", [*DEEP_WAYS, "a claimed SENT_BY"])
def test_no_deeply_nested_frame_stops_the_broker(broker, how):
    logger = Raw(broker.port, "logger", rooms=[protocol.LOGGING_ROOM, "r"])
    wait_members(broker, protocol.LOGGING_ROOM, 1)
    # ~2 kB frames around the depth at which Python's json stops parsing: the one that killed
    # the broker's thread (RecursionError re-encoding it) lies in here wherever that is
    senders = []
    for depth in range(900, 1000, 3):
        senders.append(Raw(broker.port, "deep"))
        senders[-1].sock.sendall(deep_frame(how, depth))
    still_routes(broker.port)
    assert broker._thread.is_alive()
    assert all(closed_by_broker(sender.sock) for sender in senders)  # refused: deeper than MAX_DEPTH
    assert broker.frames_refused == len(range(900, 1000, 3))
    forward = {"TYPE": protocol.FORWARD, "TO_ROOM": "r", "X": [1]}
    Raw(broker.port, "shallow").send(forward)
    assert logger.recv()["X"] == [1]  # the shallow one came through to "r"...
    assert logger.recv()["MESSAGE"] == {**forward, "SENT_BY": "shallow"}  # ...and its copy: no deep one before it


def test_a_frame_at_the_depth_bound_is_routed_and_logged_and_one_deeper_is_refused(broker):
    received: list[dict] = []
    logged: list[dict] = []
    member = Component("member", HOST, broker.port)
    member.add_eventHandler(received.append, None, trigger=Trigger(MESSAGE_TYPE.DATA.FORWARD, "r"))
    member.start()
    logger = Component("logger", HOST, broker.port)
    logger.add_eventHandler(logged.append, None, trigger=Trigger(MESSAGE_TYPE.LOG.MESSAGE, protocol.LOGGING_ROOM))
    logger.start()
    wait_members(broker, "r", 1)
    wait_members(broker, protocol.LOGGING_ROOM, 1)
    sender = Raw(broker.port, "sender")
    at_bound = f'{{"TYPE":"{protocol.FORWARD}","TO_ROOM":"r","X":{nested(protocol.MAX_DEPTH - 1)}}}'
    sender.sock.sendall(protocol.frame_bytes(at_bound.encode()))
    wait_for(lambda: received and logged, 5, "the message and its _logging copy")
    assert protocol.nesting(at_bound.encode()) == protocol.MAX_DEPTH
    assert logged[0]["MESSAGE"] == {**json.loads(at_bound), "SENT_BY": "sender"}  # one level deeper: accepted
    too_deep = f'{{"TYPE":"{protocol.FORWARD}","TO_ROOM":"r","X":{nested(protocol.MAX_DEPTH)}}}'
    sender.sock.sendall(protocol.frame_bytes(too_deep.encode()))
    assert closed_by_broker(sender.sock)
    assert broker.frames_refused == 1 and len(received) == 1
    member.close()
    logger.close()


def test_the_logging_copy_wraps_the_body_as_sent(broker):
    logger = Raw(broker.port, "logger", rooms=[protocol.LOGGING_ROOM])
    wait_members(broker, protocol.LOGGING_ROOM, 1)
    sender = Raw(broker.port, "sender")
    body = b'{"TYPE": "DATA/FORWARD",  "TO_ROOM": "r", "SENT_BY": "sender", "X": [1.50, 2e3]}'
    sender.sock.sendall(protocol.frame_bytes(body))
    frame = logger._exactly(int(logger._exactly(protocol.HEADER_LENGTH)))
    assert frame.endswith(b'"MESSAGE":' + body + b"}")  # spaces, 1.50 and 2e3 as sent


def test_a_fault_while_serving_one_peer_closes_that_peer_only(broker, caplog, monkeypatch):
    def fault(asker):
        raise RuntimeError("a bug one peer's message ran into")

    monkeypatch.setattr(broker._rooms, "census", fault)
    asker = Raw(broker.port, "asker")
    asker.send({"TYPE": protocol.COMMAND_CUSTOM, "TO_ROOM": protocol.COMMAND_ROOM, "CENSUS": []})
    assert closed_by_broker(asker.sock)
    assert "asker@127.0.0.1" in caplog.text and "a bug one peer's message ran into" in caplog.text  # with its traceback
    still_routes(broker.port)


def test_the_broker_process_exits_1_when_its_loop_fails(tmp_path):
    # A fault no peer can cause any more (item 1), injected: the loop's stats step raises.
    code = textwrap.dedent(
        """
        import sys
        from cartpole_tui.env.wire.broker import Broker
        from cartpole_tui.tui.cli.parser import main

        def fault(self):
            raise RuntimeError("injected fault")

        Broker._publish_stats_when_due = fault
        sys.exit(main(sys.argv[1:]))
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", code, "broker", "--port", str(free_port())],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, "XDG_CONFIG_HOME": str(tmp_path)},
    )
    assert result.returncode == 1, result.stderr
    assert "cartpole-tui: the broker stopped: RuntimeError('injected fault')" in result.stderr


def test_the_broker_process_exits_0_on_sigterm(tmp_path):
    port = free_port()
    child = subprocess.Popen(
        [CLI, "broker", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "XDG_CONFIG_HOME": str(tmp_path)},
    )
    try:
        assert "listening" in child.stdout.readline()
        still_routes(port)
        child.send_signal(signal.SIGTERM)
        assert child.wait(10) == 0
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()


# --- 4. silent connections and crowds from one address -----------------------------------------------


def test_a_connection_that_never_registers_is_closed_at_the_deadline():
    broker = Broker(HOST, 0, register_timeout=1.0).start()
    try:
        silent = connect_from(HOST, broker.port)
        nameless = Raw(broker.port)  # talks, but never REGISTERs a NAME
        nameless.send({"TYPE": protocol.REGISTER, "TO_ROOM": protocol.COMMAND_ROOM})
        named = Raw(broker.port, "named", rooms=["check"])
        started = time.monotonic()
        assert closed_by_broker(silent) and closed_by_broker(nameless.sock)
        assert 1.0 <= time.monotonic() - started < 4.0
        assert broker.stats()["clients"] == ["named"]
        still_routes(broker.port)
        named.close()
    finally:
        broker.stop()


def test_more_connections_from_one_address_than_its_cap_are_closed_as_they_arrive():
    broker = Broker(HOST, 0, max_per_address=5).start()
    try:
        crowd = [connect_from(OTHER_HOST, broker.port) for _ in range(5)]
        wait_for(lambda: len(broker.stats()["clients"]) == 5, 5, "the first five")
        extra = connect_from(OTHER_HOST, broker.port)
        assert closed_by_broker(extra)
        still_routes(broker.port)  # from 127.0.0.1: not crowded out
        crowd.pop().close()
        wait_for(lambda: len(broker.stats()["clients"]) == 4, 5, "one of them to leave")
        again = connect_from(OTHER_HOST, broker.port)  # room for one again
        wait_for(lambda: len(broker.stats()["clients"]) == 5, 5, "the new one")
        for sock in (*crowd, again):
            sock.close()
    finally:
        broker.stop()


@pytest.mark.timeout(90)
def test_idle_sockets_cannot_lock_out_clients_with_the_token(tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN)
    token_file.chmod(0o600)
    port = free_port()
    log = open(tmp_path / "broker.log", "w")  # noqa: SIM115 (the child writes it for the whole test)
    command = [CLI, "broker", "--port", str(port), "--token-file", str(token_file), "--max-per-address", "100"]
    broker = subprocess.Popen(
        ["prlimit", "--nofile=256:256", *command],
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
        env={**os.environ, "XDG_CONFIG_HOME": str(tmp_path)},
    )
    idle: list[socket.socket] = []
    try:
        assert "listening" in broker.stdout.readline()
        # 300 silent sockets from one address: more than the broker's 256 descriptors
        idle = [connect_from(OTHER_HOST, port) for _ in range(300)]
        still_routes(port, token=TOKEN)
        closed = sum(closed_by_broker(sock) for sock in idle[100:110])
        assert closed == 10  # the ones over the cap were closed as they arrived
    finally:
        for sock in idle:
            sock.close()
        broker.terminate()
        broker.wait(10)
        log.close()


# --- 9. guessing the token ----------------------------------------------------------------------------


def wrong_token_try(port: int) -> None:
    sock = connect_from(OTHER_HOST, port)
    try:
        register = {"TYPE": protocol.REGISTER, "NAME": "guess", "TOKEN": "wrong" * 4}
        sock.sendall(protocol.encode_frame(register))
    except OSError:
        pass  # closed before it could say anything: backed off
    closed_by_broker(sock)
    sock.close()


@pytest.mark.timeout(60)
def test_wrong_tokens_are_backed_off_per_address_and_summed_up_in_the_log(caplog):
    caplog.set_level(logging.INFO, logger="cartpole_tui.env.wire.broker")
    broker = Broker(HOST, 0, token=TOKEN).start()
    try:
        started = time.monotonic()
        tries = 0
        while time.monotonic() - started < 3.0:
            wrong_token_try(broker.port)
            tries += 1
        heard = broker.refused - broker.backed_off  # tokens the broker compared
        assert tries > 100 and broker.refused == tries  # every try refused...
        assert heard <= defaults.AUTH_FREE_TRIES + 4  # ...but only a few were heard (was every one: 6,262/s)
        refusals = [r for r in caplog.records if r.levelno >= logging.WARNING and "refused" in r.getMessage()]
        assert len(refusals) <= 2  # the first wrong token, the first backing off (was a line a try)
        assert TOKEN not in caplog.text
        still_routes(broker.port, token=TOKEN)  # from another address: admitted at once
    finally:
        broker.stop()


def test_the_refusals_of_an_interval_are_summed_up_in_one_line():
    from cartpole_tui.env.wire.admission import RefusalLog

    refusals = RefusalLog(interval=10.0)
    shown = [refusals.note("refused: wrong token", f"10.0.0.{i % 5}", 100.0 + i / 10) for i in range(50)]
    assert shown == [True] + [False] * 49
    assert refusals.note("refused: REGISTER without a token", "10.0.0.9", 101.0)  # the first of its kind
    assert refusals.summary(105.0) is None  # the interval has not ended
    line = refusals.summary(110.0)
    assert line == (
        "refused 49 more in 10s: wrong token ×49; from 10.0.0.1 ×10, 10.0.0.2 ×10, 10.0.0.3 ×10 and 2 more addresses"
    )
    assert refusals.summary(125.0) is None and refusals.note("refused: wrong token", "10.0.0.1", 125.0)


@pytest.mark.parametrize("token", ["x", "y" * (defaults.MIN_TOKEN - 1)])
def test_a_token_file_shorter_than_16_characters_is_one_line_and_exit_2(tmp_path, token):
    path = tmp_path / "token"
    path.write_text(token + "\n")
    path.chmod(0o600)
    result = subprocess.run(
        [CLI, "broker", "--port", "0", "--token-file", str(path)],
        capture_output=True,
        text=True,
        timeout=20,
        env={**os.environ, "XDG_CONFIG_HOME": str(tmp_path)},
    )
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "at least 16" in result.stderr and token not in result.stderr


# --- 12. a claimed SENT_BY ------------------------------------------------------------------------------


CLAIMS = {
    "plain": b'{"TYPE":"DATA/CUSTOM","TO_ROOM":"r","SENT_BY":"environment"}',
    "escaped key": b'{"TYPE":"DATA/CUSTOM","TO_ROOM":"r","SENT\\u005fBY":"environment"}',
    "twice, its own name last": b'{"TYPE":"DATA/CUSTOM","TO_ROOM":"r","SENT_BY":"environment","SENT_BY":"mallory"}',
    "twice, its own name first": b'{"TYPE":"DATA/CUSTOM","TO_ROOM":"r","SENT_BY":"mallory","SENT_BY":"environment"}',
    "not a string": b'{"TYPE":"DATA/CUSTOM","TO_ROOM":"r","SENT_BY":["environment"]}',
    "null": b'{"TYPE":"DATA/CUSTOM","TO_ROOM":"r","SENT_BY":null}',
}


@pytest.mark.parametrize("body", CLAIMS.values(), ids=CLAIMS.keys())
def test_no_client_can_appear_as_another(broker, body):
    receiver = Raw(broker.port, "receiver", rooms=["r"])
    wait_members(broker, "r", 1)
    mallory = Raw(broker.port, "mallory")
    mallory.sock.sendall(protocol.frame_bytes(body))
    frame = receiver._exactly(int(receiver._exactly(protocol.HEADER_LENGTH)))
    assert b"environment" not in frame and json.loads(frame)["SENT_BY"] == "mallory"
    anonymous = Raw(broker.port)  # before it registers, SENT_BY is its address
    anonymous.sock.sendall(protocol.frame_bytes(body))
    assert receiver.recv()["SENT_BY"] == "{}:{}".format(*anonymous.sock.getsockname())


def test_a_register_with_a_claimed_sent_by_and_a_token_goes_on_as_the_broker_says(broker):
    watcher = Raw(broker.port, "watcher", rooms=[protocol.COMMAND_ROOM])
    wait_members(broker, protocol.COMMAND_ROOM, 1)
    newcomer = Raw(broker.port)
    register = {"TYPE": protocol.REGISTER, "NAME": "newcomer", "TO_ROOM": protocol.COMMAND_ROOM}
    newcomer.send({**register, "SENT_BY": "environment", "TOKEN": "t"})
    seen = watcher.recv()
    assert seen["SENT_BY"] == "newcomer" and "TOKEN" not in seen


# --- beyond: generated frames against a live broker ------------------------------------------------------

_SHARED: Broker | None = None


def shared_broker() -> Broker:
    global _SHARED
    if _SHARED is None:
        _SHARED = Broker(HOST, 0, max_frame=1 << 16, register_timeout=5.0).start()
    return _SHARED


@pytest.mark.timeout(600)
@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(frame=FRAMES)
def test_after_any_frame_two_fresh_clients_still_exchange_a_message(frame):
    broker = shared_broker()
    hostile = Raw(broker.port, "hostile", rooms=["prop", protocol.LOGGING_ROOM, protocol.STATS_ROOM])
    try:
        hostile.sock.sendall(frame)
    except OSError:
        pass  # closed by the broker: allowed
    finally:
        hostile.close()
    still_routes(broker.port)
    assert broker._thread.is_alive()
