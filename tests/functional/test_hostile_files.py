"""Files an attacker or an accident puts where ours should be (issue 17, cases 10 and 11).

Each is given to the installed command (a real process, with a timeout so a hang fails):
a bad population, config or history file gets one line naming it and the documented exit
code, never a traceback, a hang or a file created beside a device. Token files the embedded
network shares never outlive their owner.
"""

from __future__ import annotations

import io
import os
import signal
import subprocess
import zipfile

import numpy as np
import pytest
from test_cli import CLI, cli, one_clear_line

from cartpole_tui.env.runtime.network import LocalNetwork, NetworkStartError
from cartpole_tui.env.swarm import saved
from cartpole_tui.env.swarm.policy import N_WEIGHTS

from conftest import free_port, wait_for

# --- population files -----------------------------------------------------------------------


def npz(path, **arrays: bytes) -> None:
    """An .npz whose members are the given raw .npy bytes."""
    with zipfile.ZipFile(path, "w") as archive:
        for key, data in arrays.items():
            archive.writestr(f"{key}.npy", data)


def npy_header(shape: tuple[int, ...], dtype: str = "<f8") -> bytes:
    out = io.BytesIO()
    np.lib.format.write_array_header_1_0(out, {"descr": dtype, "fortran_order": False, "shape": shape})
    return out.getvalue()


def good_population(path) -> None:
    saved.save(str(path), saved.SavedPopulation(np.zeros((2, N_WEIGHTS))))


def truncated(path) -> None:
    good_population(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def claims_a_billion_rows(path) -> None:
    npz(path, weights=npy_header((10**9, N_WEIGHTS)) + bytes(8 * N_WEIGHTS))


def generation_as_an_array(path) -> None:
    np.savez(path, weights=np.zeros((2, N_WEIGHTS)), generation=np.arange(3))


def generation_at_the_end_of_int64(path) -> None:
    np.savez(path, weights=np.zeros((2, N_WEIGHTS)), generation=np.int64(2**63 - 1))


def complex_weights(path) -> None:
    np.savez(path, weights=np.zeros((2, N_WEIGHTS), dtype=np.complex128))


def rows_that_inflate(path) -> None:
    """20,000 rows (120 MB, twice the bound) in about 120 kB: zeros compress well."""
    rows = 20_000
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive, archive.open("weights.npy", "w") as member:
        member.write(npy_header((rows, N_WEIGHTS)))
        zeros = bytes(8 * N_WEIGHTS * 1000)
        for _ in range(rows // 1000):
            member.write(zeros)


def a_fifo(path) -> None:
    os.mkfifo(path)


BAD_POPULATIONS = [
    truncated,
    claims_a_billion_rows,
    generation_as_an_array,
    generation_at_the_end_of_int64,
    complex_weights,
    rows_that_inflate,
    a_fifo,
]


@pytest.mark.parametrize("make", BAD_POPULATIONS, ids=lambda make: make.__name__)
def test_a_bad_population_file_is_one_line_naming_it(tmp_path, broker, make):
    path = tmp_path / "population.npz"
    make(path)
    result = cli("swarm", "--connect", f"127.0.0.1:{broker.port}", "--load", str(path), timeout=30)
    one_clear_line(result, 1, str(path))


def test_the_embedded_network_says_which_population_file_it_could_not_use(tmp_path):
    path = tmp_path / "runs.sqlite3.population.npz"
    generation_at_the_end_of_int64(path)
    with pytest.raises(NetworkStartError) as refused:
        LocalNetwork(models=2, population_file=str(path)).start()
    message = str(refused.value)
    assert (
        str(path) in message and "generation" in message and "(see" not in message
    )  # the file named, not "see the log"


def test_a_good_population_file_still_loads(tmp_path):
    path = tmp_path / "population.npz"
    saved.save(str(path), saved.SavedPopulation(np.ones((3, N_WEIGHTS)), generation=12, seed=5))
    back = saved.load(str(path))
    assert back.weights.shape == (3, N_WEIGHTS) and back.generation == 12 and back.seed == 5


# --- config files ---------------------------------------------------------------------------


def nested_deep(path) -> None:
    path.write_text("connect = " + "[" * 100_000 + "]" * 100_000 + "\n")


def one_key_of_many_dots(path) -> None:
    path.write_text("a" + ".a" * 50_000 + " = 1\n")


def config_fifo(path) -> None:
    os.mkfifo(path)


@pytest.mark.parametrize("make", [nested_deep, one_key_of_many_dots, config_fifo], ids=lambda make: make.__name__)
def test_a_bad_config_file_is_one_line_naming_it(tmp_path, make):
    path = tmp_path / "config.toml"
    make(path)
    result = subprocess.run(
        [CLI, "export", "--db", ":memory:"],
        capture_output=True,
        text=True,
        timeout=10,  # 50,000 dotted parts took tomllib 20 s
        env={**os.environ, "CARTPOLE_TUI_CONFIG": str(path)},
    )
    one_clear_line(result, 2, str(path))


# --- the run history ------------------------------------------------------------------------


def test_a_history_that_is_a_fifo_is_refused_without_hanging(tmp_path):
    fifo = tmp_path / "runs.sqlite3"
    os.mkfifo(fifo)
    one_clear_line(cli("export", "--db", str(fifo), timeout=20), 1, f"{fifo} is not a regular file")
    result = cli("run", "--episodes", "2", "--agent", "random", "--db", str(fifo), timeout=60)
    assert result.returncode == 0 and "average score" in result.stdout  # kept in memory, as for any bad file
    assert f"{fifo} is not a regular file" in result.stderr and "Traceback" not in result.stderr


def test_a_history_on_a_device_creates_nothing_beside_it(tmp_path):
    device = "/dev/full"
    beside = [device + suffix for suffix in ("-journal", "-wal", "-shm", ".population.npz")]
    before = {path for path in beside if os.path.exists(path)}
    result = cli("run", "--episodes", "1", "--agent", "random", "--db", device, timeout=60)
    assert f"{device} is not a regular file" in result.stderr
    assert {path for path in beside if os.path.exists(path)} == before


# --- token files ----------------------------------------------------------------------------


def token_files(folder) -> list[str]:
    return sorted(name for name in os.listdir(folder) if name.startswith("cartpole-tui-token-"))


def test_the_terminal_control_room_writes_no_token_file(tmp_path):
    temp = tmp_path / "tmp"
    temp.mkdir()
    run = subprocess.Popen(
        [CLI, "run", "--episodes", "100000", "--agent", "random", "--db", ":memory:"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,  # where the progress goes, a line an episode
        text=True,
        env={**os.environ, "TMPDIR": str(temp)},
    )
    try:
        assert run.stderr is not None and "episode" in run.stderr.readline()  # the network is up, a run plays
        assert token_files(temp) == []
    finally:
        run.kill()  # -9: nothing could be removed now
        run.wait()
    assert token_files(temp) == []


def test_a_shared_token_file_goes_when_its_owner_is_killed(tmp_path):
    temp = tmp_path / "tmp"
    temp.mkdir()
    port = free_port()
    command = [CLI, "serve", "--port", str(port), "--agent", "random", "--db", ":memory:"]
    serve = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "TMPDIR": str(temp)},
    )
    try:
        assert serve.stdout is not None and "cartpole-tui serve:" in serve.stdout.readline()
        assert len(token_files(temp)) == 1  # for the visits to join with
    finally:
        serve.send_signal(signal.SIGKILL)
        serve.wait()
    wait_for(lambda: token_files(temp) == [], 10, "the token file to be removed")


def test_a_start_removes_token_files_whose_owner_is_gone(tmp_path):
    temp = tmp_path / "tmp"
    temp.mkdir()
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = temp / f"cartpole-tui-token-{dead.pid}-abc123"
    live = temp / f"cartpole-tui-token-{os.getpid()}-def456"
    for path in (stale, live):
        path.write_text("x\n")
    result = subprocess.run(
        [CLI, "run", "--episodes", "1", "--agent", "random", "--db", ":memory:"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "TMPDIR": str(temp)},
    )
    assert result.returncode == 0, result.stderr
    assert token_files(temp) == [live.name]
