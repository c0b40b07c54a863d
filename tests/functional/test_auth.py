"""A token on the broker: strangers are refused before they can join a room, team members are not.

The hostile cases of issue 11, each tried by an unauthenticated peer against a broker
with a token: a fake ENV_DONE, GET and SET on ``evolution``; and the open bind's warning.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import swergio
from test_broker import Bystander, Raw, custom

from cartpole_tui.env.runtime.network import LocalNetwork
from cartpole_tui.env.runtime.session import SessionOptions
from cartpole_tui.env.wire import auth, protocol
from cartpole_tui.env.wire.broker import Broker
from cartpole_tui.env.wire.transport import Component
from cartpole_tui.tui.app import ControlRoomApp

from conftest import cli, free_port, one_clear_line, polls, screen_text, start_swergio_client, wait_for

HOST = "127.0.0.1"
TOKEN = "team-secret-" + uuid.uuid4().hex
APP = Path(sys.executable).parent / "cartpole-tui"


@pytest.fixture(autouse=True)
def no_process_token():
    """Each test says which token this process presents (the embedded network sets one)."""
    auth.use_token(None)
    yield
    auth.use_token(None)


@pytest.fixture
def guarded():
    instance = Broker(HOST, 0, token=TOKEN).start()
    yield instance
    instance.stop()


class Listener:
    """One of ours (presents the token) recording what reaches ``room``."""

    def __init__(self, port: int, room: str, name: str = "listener"):
        self.heard: list[dict] = []
        self.client = Component(name, HOST, port, token=TOKEN)
        custom_type = swergio.MESSAGE_TYPE.DATA.CUSTOM
        self.client.add_eventHandler(self.heard.append, None, trigger=swergio.Trigger(custom_type, room))
        self.client.start()

    def hears(self, nonce: str) -> None:
        wait_for(lambda: any(m.get("NONCE") == nonce for m in self.heard), 5, f"message {nonce}")


def stranger(port: int, room: str, message: dict) -> Raw:
    """A peer that registers as swergio 0.0.2 does (no token), joins ``room`` and sends ``message``,
    all in one write (the broker closes it after the first frame: a later write could fail)."""
    intruder = Raw(port)
    frames = [
        {"TYPE": protocol.REGISTER, "NAME": "intruder", "TO_ROOM": protocol.COMMAND_ROOM},
        {"TYPE": protocol.JOINROOM, "ROOM": room, "TO_ROOM": protocol.COMMAND_ROOM},
        message,
    ]
    intruder.sock.sendall(b"".join(protocol.encode_frame(frame) for frame in frames))
    return intruder


def test_a_fake_env_done_from_a_stranger_never_reaches_the_control_room(guarded, caplog):
    caplog.set_level(logging.INFO, logger="cartpole_tui.env.wire.broker")
    control = Listener(guarded.port, protocol.CONTROL, "control")
    wait_for(lambda: guarded.stats()["rooms"].get(protocol.CONTROL), 5, "our control client in the room")
    intruder = stranger(
        guarded.port, protocol.CONTROL, custom(protocol.CONTROL, STATUS=protocol.ENV_DONE, AVG_SCORE=500.0)
    )
    assert intruder.closed_by_broker()
    ours = Component("environment", HOST, guarded.port, token=TOKEN)
    real = custom(protocol.CONTROL, STATUS=protocol.ENV_DONE, AVG_SCORE=12.0)
    ours.send(real)
    control.hears(real["NONCE"])
    assert [m["AVG_SCORE"] for m in control.heard if m.get("STATUS") == protocol.ENV_DONE] == [12.0]
    assert guarded.stats()["rooms"][protocol.CONTROL].members == 1  # the stranger never joined
    assert "refused: REGISTER without a token" in caplog.text and TOKEN not in caplog.text
    ours.close()
    control.client.close()


@pytest.mark.parametrize("command", [{"CMD": "GET"}, {"CMD": "SET", "WEIGHTS": {"m": [0.0] * 755}}])
def test_get_and_set_on_evolution_from_a_stranger_reach_no_model(guarded, command):
    model = Listener(guarded.port, "evolution", "model")
    wait_for(lambda: guarded.stats()["rooms"].get("evolution"), 5, "the model in the evolution room")
    intruder = stranger(guarded.port, "evolution", custom("evolution", **command))
    assert intruder.closed_by_broker()  # no WEIGHTS came back: the connection just ended
    ours = Component("evolution", HOST, guarded.port, token=TOKEN)
    real = custom("evolution", CMD="GET")
    ours.send(real)
    model.hears(real["NONCE"])
    assert [m["NONCE"] for m in model.heard] == [real["NONCE"]]
    ours.close()
    model.client.close()


def test_a_wrong_token_or_a_message_before_register_is_refused_and_bystanders_carry_on(guarded, caplog):
    caplog.set_level(logging.WARNING, logger="cartpole_tui.env.wire.broker")
    auth.use_token(TOKEN)  # the bystander (a plain swergio client) is admitted through our Component below
    watcher = Listener(guarded.port, "bystanders", "bystander")
    wrong = Raw(guarded.port)
    wrong.send({"TYPE": protocol.REGISTER, "NAME": "x", "TO_ROOM": protocol.COMMAND_ROOM, "TOKEN": TOKEN[:-1] + "?"})
    assert wrong.closed_by_broker()
    early = Raw(guarded.port)
    early.send(custom("bystanders"))
    assert early.closed_by_broker()
    talker = Component("talker", HOST, guarded.port)
    message = custom("bystanders")
    talker.send(message)
    watcher.hears(message["NONCE"])
    assert "refused: wrong token" in caplog.text and "refused: sent a message before registering" in caplog.text
    assert TOKEN not in caplog.text and guarded.refused == 2
    talker.close()
    watcher.client.close()


def test_the_token_goes_no_further_than_the_broker(guarded):
    watcher = Raw(guarded.port)
    watcher.send({"TYPE": protocol.REGISTER, "NAME": "w", "TO_ROOM": protocol.COMMAND_ROOM, "TOKEN": TOKEN})
    watcher.send({"TYPE": protocol.JOINROOM, "ROOM": protocol.COMMAND_ROOM, "TO_ROOM": protocol.COMMAND_ROOM})
    wait_for(lambda: guarded.stats()["rooms"][protocol.COMMAND_ROOM].members == 1, 5, "the watcher in _command")
    newcomer = Component("newcomer", HOST, guarded.port, token=TOKEN)
    seen = watcher.recv()
    assert seen["TYPE"] == protocol.REGISTER and seen["NAME"] == "newcomer" and "TOKEN" not in seen
    newcomer.close()


class TokenClient(swergio.Client):
    """A swergio 0.0.2 client whose REGISTER carries the token (what a published component needs)."""

    def register(self):
        self.send(
            {
                "ID": uuid.uuid4().hex,
                "TYPE": protocol.REGISTER,
                "NAME": self.name,
                "TO_ROOM": "_command",
                "TOKEN": TOKEN,
            }
        )
        self.join_room("_command")


def test_a_token_bearing_swergio_client_is_admitted(guarded):
    client = TokenClient("bystander", HOST, guarded.port, "utf-8", 10)
    heard = []
    custom_type = swergio.MESSAGE_TYPE.DATA.CUSTOM
    client.add_eventHandler(heard.append, custom_type, trigger=swergio.Trigger(custom_type, "bystanders"))
    start_swergio_client(client)
    wait_for(lambda: guarded.stats()["rooms"].get("bystanders"), 5, "the token-bearing client in its room")
    talker = Component("talker", HOST, guarded.port, token=TOKEN)
    message = custom("bystanders")
    talker.send(message)
    wait_for(lambda: any(m.get("NONCE") == message["NONCE"] for m in heard), 5, "the message at the swergio client")
    talker.close()


def test_a_trusted_cidr_admits_unmodified_swergio_clients_without_a_token():
    trusted = Broker(HOST, 0, token=TOKEN, trust=auth.parse_networks(["127.0.0.0/8"])).start()
    try:
        bystander = Bystander(trusted)  # swergio.Client as shipped: no token
        bystander.still_served(Raw(trusted.port, "talker"))
    finally:
        trusted.stop()
    assert not auth.is_trusted("127.0.0.1", auth.parse_networks(["10.0.0.0/8"]))


def test_the_embedded_network_refuses_a_stranger_and_admits_its_own_session():
    network = LocalNetwork(agent="random", seed=1, share_token=True).start()  # the file serve shares
    try:
        assert os.stat(network.token_file).st_mode & 0o777 == 0o600
        intruder = stranger(network.port, protocol.CONTROL, protocol.start_run(3, False))
        assert intruder.closed_by_broker()
        auth.use_token(network.token)
        ours = Component("control", network.host, network.port)
        ours.send(custom(protocol.CONTROL))  # admitted: the connection stays up
        ours.close()
    finally:
        network.stop()


# --- the token file ---------------------------------------------------------------------


def token_file(tmp_path, mode: int, text: str = TOKEN) -> str:
    path = tmp_path / "token"
    path.write_text(text + "\n")
    path.chmod(mode)
    return str(path)


def test_a_token_file_readable_by_others_is_refused_with_one_line(tmp_path):
    loose = token_file(tmp_path, 0o644)
    with pytest.raises(auth.TokenError, match="readable by others"):
        auth.read_token_file(loose)
    done = subprocess.run(
        [str(APP), "broker", "--token-file", loose, "--port", "0"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2 and "chmod 600" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and TOKEN not in done.stderr
    assert auth.read_token_file(token_file(tmp_path, 0o600)) == TOKEN


def test_an_empty_or_missing_token_file_is_one_line(tmp_path):
    with pytest.raises(auth.TokenError, match="one word"):
        auth.read_token_file(token_file(tmp_path, 0o600, ""))
    done = subprocess.run(
        [str(APP), "evolve", "--connect", f"{HOST}:1", "--token-file", str(tmp_path / "nope")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2 and "No such file" in done.stderr and "Traceback" not in done.stderr


def _first_stderr_line(command: list[str], env: dict | None = None) -> str:
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        return process.stderr.readline()
    finally:
        process.terminate()
        process.wait(10)


def test_an_open_bind_without_a_token_is_warned_about(tmp_path):
    port = str(free_port())
    assert "no token" in _first_stderr_line([str(APP), "broker", "--host", "0.0.0.0", "--port", port])
    env = {**os.environ, auth.TOKEN_FILE_ENV: token_file(tmp_path, 0o600)}
    line = _first_stderr_line([str(APP), "broker", "--host", "0.0.0.0", "--port", str(free_port())], env)
    assert "no token" not in line  # with the token from the environment variable: no warning


async def test_the_status_line_says_open_network_for_a_remote_broker_without_a_token(tmp_path):
    broker = Broker("0.0.0.0", 0).start()
    try:
        # 0.0.0.0 reaches this machine, and is not a loopback address: it stands for a remote host here.
        options = SessionOptions(connect=f"0.0.0.0:{broker.port}", embed_env=False)
        app = ControlRoomApp(options, db_path=str(tmp_path / "runs.sqlite3"))
        async with app.run_test(size=(120, 30)) as pilot:
            for ready in polls(lambda: app.connection == "connected", 30, "the app to connect"):
                if not ready:
                    await pilot.pause(0.05)
            await pilot.pause(0.1)
            assert "open network" in screen_text(app).splitlines()[0]
    finally:
        broker.stop()


def test_a_broker_bound_to_every_address_with_a_token_refuses_strangers_there_too():
    open_bind = Broker("0.0.0.0", 0, token=TOKEN).start()
    try:
        intruder = stranger(
            open_bind.port, protocol.CONTROL, custom(protocol.CONTROL, STATUS=protocol.ENV_DONE, AVG_SCORE=500.0)
        )
        assert intruder.closed_by_broker() and open_bind.refused == 1
    finally:
        open_bind.stop()


@pytest.mark.parametrize(
    "command",
    [["run", "--episodes", "5", "--db", ":memory:"], ["evolve"], ["env", "--db", ":memory:"], ["swarm"]],
    ids=lambda command: command[0],
)
def test_a_refused_token_is_said_in_one_readable_line_by_every_command(guarded, command):
    """`run` said "Broken pipe", `evolve` leaked a log record before the readable line."""
    done = cli(command[0], "--connect", f"{HOST}:{guarded.port}", *command[1:], timeout=60)
    one_clear_line(done, 1, "cartpole-tui: ")
    assert done.stderr == (
        f"cartpole-tui: {HOST}:{guarded.port} closed the connection at once: not a swergio broker, or a broker "
        "that refused this client (if the broker has a token: give it with --token-file)\n"
    )
