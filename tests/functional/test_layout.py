"""The layout's contracts: one import package, two layers that keep to themselves, no shadowing."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
APP = Path(sys.executable).parent / "cartpole-tui"


def _imports(path: Path) -> set[str]:
    """Every module a file imports (absolute names; relative imports as '.name')."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            names.add("." * node.level + (node.module or ""))
    return names


def _sources(folder: str) -> list[Path]:
    return sorted((ROOT / folder).rglob("*.py"))


def _top(name: str) -> str:
    return name.split(".")[0]


def test_env_imports_no_ui():
    for path in _sources("env"):
        ui = {
            name for name in _imports(path) if _top(name) in ("textual", "rich") or name.startswith("cartpole_tui.tui")
        }
        assert not ui, f"{path.relative_to(ROOT)} imports {ui}: env/ knows nothing of the UI"


# env/ is a stack: each layer imports only those below it; env/events.py, defaults.py, paths.py and words.py
# sit beside the stack for every layer (and import none of it).
ENV_LAYERS = ("wire", "components", "history", "swarm", "runtime")
ENV_SHARED = ("events", "defaults", "paths", "words")


def upward_imports(env_root: Path) -> list[str]:
    """Every import in ``env_root`` of a layer above the importing module's own, as readable lines."""
    found = []
    for path in sorted(env_root.rglob("*.py")):
        parts = path.relative_to(env_root).with_suffix("").parts
        own = ENV_LAYERS.index(parts[0]) if parts[0] in ENV_LAYERS else -1  # -1: shared, below every layer
        for name in _imports(path):
            if not name.startswith("cartpole_tui.env."):
                continue
            target = name.split(".")[2]
            if target in ENV_LAYERS and ENV_LAYERS.index(target) > own:
                found.append(f"env/{'/'.join(parts)}.py imports {name}")
    return found


def test_env_layers_import_only_downwards():
    assert upward_imports(ROOT / "env") == []
    shared = {path.stem for path in (ROOT / "env").glob("*.py")} - {"__init__"}
    assert shared == set(ENV_SHARED), f"env/ holds {shared}: a new shared module belongs in a layer or in ENV_SHARED"
    assert {path.name for path in (ROOT / "env").iterdir() if path.is_dir() and path.name != "__pycache__"} == set(
        ENV_LAYERS
    )


@pytest.mark.parametrize(
    ("module", "imported"),
    [
        ("wire/broker.py", "cartpole_tui.env.components.control"),
        ("components/environment.py", "cartpole_tui.env.history.store"),
        ("history/recorder.py", "cartpole_tui.env.swarm.saved"),
        ("swarm/saved.py", "cartpole_tui.env.runtime.session"),
        ("events.py", "cartpole_tui.env.wire.protocol"),
    ],
)
def test_the_layer_contract_catches_an_upward_import(tmp_path, module, imported):
    tree = tmp_path / "env"
    (tree / module).parent.mkdir(parents=True)
    (tree / module).write_text(f"from {imported} import something\n")
    assert upward_imports(tree) == [f"env/{module} imports {imported}"]


def test_tui_opens_no_sockets():
    wire = ("socket", "selectors", "socketserver", "ssl", "swergio", "nats")
    for path in _sources("tui"):
        found = {name for name in _imports(path) if _top(name) in wire}
        assert not found, f"{path.relative_to(ROOT)} imports {found}: tui/ talks to the network only through env/"


@pytest.mark.parametrize("folder", ["env", "tui", "tests", "bench", "screenshots"])
def test_every_import_of_ours_is_through_the_one_package(folder):
    for path in _sources(folder):
        stray = {name for name in _imports(path) if name.startswith(".") or _top(name) in ("env", "tui")}
        assert not stray, f"{path.relative_to(ROOT)} imports {stray}: use cartpole_tui.env… / cartpole_tui.tui…"


def test_the_wheel_holds_one_top_level_package_with_every_module(tmp_path):
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = tmp_path.glob("cartpole_tui-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert {name.split("/")[0] for name in names if not name.split("/")[0].endswith(".dist-info")} == {"cartpole_tui"}
    expected = {
        f"cartpole_tui/{path.relative_to(ROOT).as_posix()}" for folder in ("env", "tui") for path in _sources(folder)
    }
    assert expected <= set(names), f"not installed: {sorted(expected - set(names))}"
    assert "cartpole_tui/__main__.py" in names and "cartpole_tui/tui/app.tcss" in names
    entry_points = next(name for name in names if name.endswith("entry_points.txt"))
    assert "cartpole-tui = cartpole_tui.tui.cli.parser:main" in zipfile.ZipFile(wheel).read(entry_points).decode()


def test_python_dash_m_cartpole_tui_answers_help(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "cartpole_tui", "--help"], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0 and "usage: cartpole-tui" in done.stdout


def test_a_local_env_or_tui_package_cannot_shadow_ours(tmp_path):
    # A project folder of the kind RL users have: its own env/ and tui/ (and even a cartpole_tui/).
    for package in ("env", "tui", "cartpole_tui", "cartpole_tui/env", "cartpole_tui/env/runtime"):
        (tmp_path / package).mkdir()
        (tmp_path / package / "__init__.py").write_text("print('shadowed!')\nraise SystemExit(3)\n")
    (tmp_path / "env" / "network.py").write_text("print('shadowed!')\n")
    done = subprocess.run(
        [str(APP), "run", "--episodes", "2", "--agent", "random", "--db", ":memory:", "--seed", "1"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
    )
    assert "shadowed!" not in done.stdout + done.stderr
    assert done.returncode == 0, done.stderr
    assert "average" in done.stdout.lower()
