"""Export of run history: CSV and JSON parse back to exactly what the store holds."""

from __future__ import annotations

import csv
import io
import json
import os
import sqlite3

import pytest

from cartpole_tui.env.history.export import EPISODE_FIELDS, RUN_FIELDS, ExportError, export_runs, export_to_file
from cartpole_tui.env.history.store import RunStore
from tests.functional.test_store import play, record_run

from conftest import cli, one_clear_line


@pytest.fixture
def history(tmp_path):
    """A database with two finished runs of real CartPole episodes and one run without episodes."""
    path = str(tmp_path / "runs.sqlite3")
    with RunStore.open(path) as store:
        record_run(store, "a", play(7, seed=1))
        record_run(store, "b", play(4, seed=2), state="stopped")
        record_run(store, "empty", [], state="failed")
    return path


def expected(path, numbers=None) -> dict[int, tuple]:
    """run number -> (run, episodes) straight from the store."""
    with RunStore.open(path) as store:
        return {
            r.number: (r, store.episodes(r.run_uid)) for r in store.runs() if numbers is None or r.number in numbers
        }


def test_csv_parses_back_to_the_same_numbers(history, tmp_path):
    out = export_to_file(history, None, "csv", str(tmp_path / "out.csv"))
    with open(out, newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == list(RUN_FIELDS + EPISODE_FIELDS)
    runs = expected(history)
    assert len(rows) == sum(max(1, len(episodes)) for _, episodes in runs.values())
    for number, (run, episodes) in runs.items():
        mine = [row for row in rows if int(row["run"]) == number]
        assert all(row["run_uid"] == run.run_uid and row["state"] == run.state for row in mine)
        # the one steps/s figure, as the table and `run` show it (the CSV had none)
        assert all(row["steps_per_s"] == ("" if run.steps_per_s is None else repr(run.steps_per_s)) for row in mine)
        assert {float(row["started"]) for row in mine} == {run.started}
        if not episodes:
            assert [row["episode"] for row in mine] == [""] and mine[0]["avg_score"] == ""
            continue
        assert float(mine[0]["avg_score"]) == run.avg_score and float(mine[0]["best"]) == run.best
        assert [(int(r["episode"]), float(r["score"]), int(r["steps"]), float(r["wall_time"])) for r in mine] == [
            tuple(e) for e in episodes
        ]


def test_json_round_trip(history):
    out = io.StringIO()
    assert export_runs(history, None, "json", out) == 3
    document = json.loads(out.getvalue())
    assert (document["format"], document["version"]) == ("cartpole-tui/runs", 3)
    runs = expected(history)
    assert [r["run"] for r in document["runs"]] == list(runs)
    for exported in document["runs"]:
        run, episodes = runs[exported["run"]]
        assert (exported["run_uid"], exported["avg_score"], exported["state"]) == (
            run.run_uid,
            run.avg_score,
            run.state,
        )
        assert (exported["seed"], exported["deterministic"], exported["ended"]) == (run.params.seed, False, run.ended)
        assert [tuple(e.values()) for e in exported["episode_rows"]] == [tuple(e) for e in episodes]
        # the CSV's episode columns by the same names (the number was "index" here, "episode" there)
        assert all(list(e) == list(EPISODE_FIELDS) for e in exported["episode_rows"])
        # one name, one meaning: "episodes" is the number the run asked for, as in the CSV (it was the list)
        assert list(exported) == [*RUN_FIELDS, "episode_rows"] and exported["episodes"] == run.params.episodes
    assert any(exported["episode_rows"] for exported in document["runs"])


def test_chosen_runs_only(history):
    out = io.StringIO()
    assert export_runs(history, [2], "json", out) == 1
    document = json.loads(out.getvalue())
    assert [r["run_uid"] for r in document["runs"]] == ["b"]
    assert len(document["runs"][0]["episode_rows"]) == len(expected(history, [2])[2][1])


def test_export_from_a_live_store_to_the_default_path(history, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with RunStore.open(history) as store:
        number = record_run(store, "live", play(3, seed=5), state=None)  # not yet flushed to disk
        path = export_to_file(store, [number], "csv")
    assert os.path.dirname(path) == str(tmp_path) and path.endswith(".csv")
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    assert [row["run_uid"] for row in rows] == ["live"] * 3 and rows[0]["state"] == "running"


@pytest.mark.parametrize("case", ["missing database", "unknown run", "bad format", "corrupt database"])
def test_clear_errors_and_no_file_written(case, history, tmp_path):
    db, runs, fmt = history, None, "csv"
    if case == "missing database":
        db = str(tmp_path / "nothing.sqlite3")
    elif case == "unknown run":
        runs = [2, 42]
    elif case == "bad format":
        fmt = "xml"
    else:
        db = str(tmp_path / "garbage.sqlite3")
        with open(db, "wb") as f:
            f.write(b"not a database" * 100)
    out = tmp_path / "out" / "export.csv"
    out.parent.mkdir()
    with pytest.raises(ExportError) as raised:
        export_to_file(db, runs, fmt, str(out))
    assert "\n" not in str(raised.value)
    assert {
        "missing database": "no run history",
        "unknown run": "no run 42",
        "bad format": "format",
        "corrupt database": "corrupt",
    }[case] in str(raised.value)
    assert list(out.parent.iterdir()) == []
    assert case != "missing database" or not os.path.exists(db)


def test_json_of_a_history_holding_infinities_is_strict_json(history):
    """A history file edited by hand or by a hostile peer (SQLite keeps 9e999 as Infinity; ours never
    writes one): the export wrote ``Infinity``, which no strict JSON parser reads."""
    with sqlite3.connect(history) as db:
        db.execute("UPDATE runs SET avg_score = 9e999 WHERE number = 1")
        db.execute("UPDATE episodes SET score = -9e999, wall_time = 9e999 WHERE idx = 0")
    out = io.StringIO()
    export_runs(history, [1], "json", out)

    def refuse(constant: str) -> None:
        raise AssertionError(f"not strict JSON: {constant}")

    run = json.loads(out.getvalue(), parse_constant=refuse)["runs"][0]
    assert run["avg_score"] is None
    assert (run["episode_rows"][0]["score"], run["episode_rows"][0]["wall_time"]) == (None, None)
    assert run["episode_rows"][1]["score"] is not None


@pytest.mark.parametrize("uid", ['=HYPERLINK("http://x","run")', "+1+1", "-2+3", "@SUM(A1)"])
def test_a_peers_run_id_that_a_spreadsheet_would_evaluate_is_written_as_text(tmp_path, uid):
    """Any peer names its run: a CSV cell starting with = + - @ is a formula to a spreadsheet, so the
    id is written after a ' (shown as text there); negative scores stay numbers."""
    path = str(tmp_path / "runs.sqlite3")
    with RunStore.open(path) as store:
        record_run(store, uid, [(-3.5, 2), (4.0, 3)])
    out = io.StringIO()
    export_runs(path, None, "csv", out)
    rows = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert [row["run_uid"] for row in rows] == ["'" + uid] * 2
    assert [row["score"] for row in rows] == ["-3.5", "4.0"]
    assert not any(line.startswith(("=", "+", "@")) or ",=" in line for line in out.getvalue().splitlines())


@pytest.mark.parametrize(
    "uid, written", [("\t=HYPERLINK(1)", "' =HYPERLINK(1)"), ("\r\n+1+1", "'  +1+1"), (" @A1", "' @A1")]
)
def test_a_formula_after_white_space_is_written_as_text_too(tmp_path, uid, written):
    """A tab or newline is cleaned to a space, and the cell " =HYPERLINK(…)" was written as it is: a
    spreadsheet trimming cells on import evaluates it."""
    path = str(tmp_path / "runs.sqlite3")
    with RunStore.open(path) as store:
        record_run(store, uid, [(1.0, 1)])
    out = io.StringIO()
    export_runs(path, None, "csv", out)
    assert [row["run_uid"] for row in csv.DictReader(io.StringIO(out.getvalue()))] == [written]


@pytest.mark.parametrize("fmt", ["csv", "json"])
def test_out_naming_a_folder_writes_the_export_in_it(history, tmp_path, fmt):
    """`export --out DIR` (a folder that exists) ended in a traceback (IsADirectoryError); `--out DIR/`
    of a folder that does not exist wrote a file named DIR."""
    folder = tmp_path / "exports"
    folder.mkdir()
    result = cli("export", "--db", history, "--format", fmt, "--out", str(folder))
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    (written,) = folder.iterdir()
    assert written.name.startswith("cartpole-runs-") and written.suffix == f".{fmt}"
    assert result.stderr.strip() == f"exported to {written}"
    missing = tmp_path / "missing"
    one_clear_line(cli("export", "--db", history, "--out", f"{missing}/"), 1, f"cannot write to {missing}")
    assert not missing.exists()
