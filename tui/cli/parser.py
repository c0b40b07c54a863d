"""`cartpole-tui` and its subcommands: one builder per command, sharing option groups.

The options several commands take (the network to join, the run history, the environment,
the built-in agents, the display) are parent parsers, declared once and copied into each
command that takes them; each command names its function with ``set_defaults(func=…)``.
Bad input gets one clear line on stderr and a non-zero exit (2 for usage, 1 for a failure
at run time), never a traceback.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable
from typing import Any, NoReturn

from cartpole_tui.env import defaults
from cartpole_tui.env.history import tensorboard
from cartpole_tui.env.history.export import FOLDER_FORMATS, FORMATS
from cartpole_tui.env.history.store import MEMORY
from cartpole_tui.env.wire import auth, protocol
from cartpole_tui.tui.cli import arguments, commands, config, serve
from cartpole_tui.tui.cli.arguments import (
    address,
    cidr,
    connections,
    instances,
    nats_servers,
    port_number,
    redraw_rate,
    seconds,
    sessions,
)
from cartpole_tui.tui.cli.errors import EXIT_FAILURE, EXIT_INTERRUPTED, EXIT_USAGE, CommandError, UsageError

CHATTY = ("broker", "env", "serve")  # commands that log what they do (INFO); the others only warnings

Command = Callable[[argparse.Namespace], "int | None"]


class OneLineParser(argparse.ArgumentParser):
    """argparse, but an error is one line naming the command, and a hint to --help."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see --help)\n")


class SubcommandParser(OneLineParser):
    """A subcommand's parser: an argument it does not know is its own error, its line naming the
    subcommand (argparse leaves them to the top-level parser, whose line names none)."""

    def parse_known_args(self, args=None, namespace=None):
        namespace, extras = super().parse_known_args(args, namespace)
        if extras:
            self.error(f"unrecognized arguments: {' '.join(extras)}")
        return namespace, extras


# --- options shared by several commands (parent parsers) ----------------------------------


def _group(title: str) -> tuple[argparse.ArgumentParser, argparse._ArgumentGroup]:
    """A parent parser holding one titled group: its options show under that title in --help
    (the groups of one title from several parents are merged)."""
    parent = argparse.ArgumentParser(add_help=False)
    return parent, parent.add_argument_group(title)


def _option(title: str | None, *flags: str, **settings: Any) -> argparse.ArgumentParser:
    """A parent parser holding one option, shown under ``title`` (None: with the command's own)."""
    if title is None:
        parent = argparse.ArgumentParser(add_help=False)
        parent.add_argument(*flags, **settings)
        return parent
    parent, group = _group(title)
    group.add_argument(*flags, **settings)
    return parent


def network_options(connect_required: bool = False) -> argparse.ArgumentParser:
    """--connect and --token-file. Required ones may come from the config file: checked once it
    is applied (`apply_config`)."""
    parent, group = _group("network")
    parent.set_defaults(connect_required=connect_required)
    group.add_argument(
        "--connect",
        metavar="HOST:PORT",
        type=address,
        help="join this swergio broker" + ("" if connect_required else " instead of starting the embedded network"),
    )
    _add_token_file(group)
    return parent


def _add_token_file(group: argparse._ArgumentGroup) -> None:
    group.add_argument(
        "--token-file",
        metavar="FILE",
        help=f"the broker's token (mode 600; default ${auth.TOKEN_FILE_ENV}, or token_file in the config file)",
    )


def token_option() -> argparse.ArgumentParser:
    """--token-file alone (the broker: the token it asks of its clients)."""
    parent, group = _group("network")
    _add_token_file(group)
    return parent


def history_option() -> argparse.ArgumentParser:
    return _option(
        "run history",
        "--db",
        metavar="PATH",
        help="run history database (default: in your data directory; :memory: keeps nothing)",
    )


def tensorboard_option() -> argparse.ArgumentParser:
    return _option(
        "run history",
        "--tensorboard",
        metavar="DIR",
        help="also write each run's episodes to TensorBoard event files in DIR as they end, "
        "one folder per run (needs the [tensorboard] extra)",
    )


def environment_options() -> argparse.ArgumentParser:
    """--env-id and --parallel: the environment a run plays, where it runs here."""
    parent, group = _group("environment")
    _env_id(group)
    group.add_argument(
        "--parallel",
        type=instances,
        default=defaults.PARALLEL,
        metavar="N",
        help=f"environment instances a run plays at once when every agent understands batches "
        f"(default {defaults.PARALLEL}; 1 = one at a time, as the published network)",
    )
    return parent


def _env_id(group: argparse._ActionsContainer, what: str = "the environment a run plays") -> None:
    group.add_argument(
        "--env-id",
        type=arguments.environment,
        default=defaults.ENV_ID,
        metavar="ID",
        help=f"{what}: a gymnasium id with a Box observation and Discrete actions (default {defaults.ENV_ID})",
    )


def env_id_option(what: str) -> argparse.ArgumentParser:
    parent, group = _group("environment")
    _env_id(group, what)
    return parent


def no_env_option() -> argparse.ArgumentParser:
    return _option(
        "environment", "--no-env", action="store_true", help="do not run the environment here (the network has its own)"
    )


def seed_option() -> argparse.ArgumentParser:
    return _option(
        None,
        "--seed",
        type=arguments.seed,
        help=f"seed for the environment and the built-in agents ({arguments.allowed(0, defaults.SEED_MAX)})",
    )


def agent_option() -> argparse.ArgumentParser:
    return _option(
        "built-in agents",
        "--agent",
        choices=defaults.AGENTS,
        default=defaults.AGENT,
        help="built-in agents of the embedded network: the learning swarm, or a random policy",
    )


def models_option() -> argparse.ArgumentParser:
    return _option(
        "built-in agents",
        "--models",
        type=arguments.models,
        default=defaults.MODELS,
        help=f"models in the built-in swarm (default {defaults.MODELS})",
    )


def fresh_option() -> argparse.ArgumentParser:
    return _option(
        "built-in agents",
        "--fresh",
        action="store_true",
        help="the built-in swarm starts from random weights, not the population saved beside --db",
    )


def redraw_option() -> argparse.ArgumentParser:
    return _option(
        "display",
        "--redraw-hz",
        type=redraw_rate,
        metavar="HZ",
        help="repaints a second of the cart and progress (the plot at half that; `run`: of its progress bar "
        f"and episode lines); raise it on a fast link (default {defaults.REDRAW_HZ:g})",
    )


def session_options() -> list[argparse.ArgumentParser]:
    """What a command that starts or joins a network and plays runs there takes."""
    return [
        network_options(),
        history_option(),
        no_env_option(),
        environment_options(),
        seed_option(),
        agent_option(),
        models_option(),
    ]


# --- the commands -----------------------------------------------------------------------------


def _command(
    sub: argparse._SubParsersAction, name: str, func: Command, help: str, parents: list[argparse.ArgumentParser]
) -> argparse.ArgumentParser:
    parser = sub.add_parser(name, help=help, parents=parents)
    parser.set_defaults(func=func)
    return parser


def add_run(sub: argparse._SubParsersAction) -> None:
    run = _command(
        sub,
        "run",
        commands.run,
        "one run headless, with a progress bar; prints the run's average",
        [*session_options(), tensorboard_option(), fresh_option(), redraw_option()],
    )
    run.add_argument(
        "--episodes",
        type=arguments.episodes,
        help=f"episodes in the run (default {defaults.EPISODES})",
    )
    run.add_argument("--deterministic", action="store_true", help="the models act deterministically")
    run.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    run.add_argument(
        "--timeout",
        type=seconds,
        default=defaults.RUN_IDLE_TIMEOUT,
        help=f"seconds without progress before giving up (default {defaults.RUN_IDLE_TIMEOUT:g})",
    )
    schedule = run.add_argument_group("schedule")
    schedule.add_argument(
        "--schedule",
        action="store_true",
        help="rounds of (train, evaluate deterministically, evolve) instead of one run",
    )
    schedule.add_argument(
        "--target",
        type=arguments.score,
        help="schedule: the deterministic average that counts as solved (default: the environment's "
        "reward_threshold, 475 for CartPole-v1; needed for an environment without one)",
    )
    schedule.add_argument(
        "--rounds", type=arguments.rounds, help=f"schedule: most rounds (default {defaults.SCHEDULE_ROUNDS})"
    )
    schedule.add_argument(
        "--train",
        type=arguments.episodes,
        help=f"schedule: training episodes a round (default {defaults.SCHEDULE_TRAIN}; "
        f"{defaults.SCHEDULE_TRAIN_JOINED} with --connect)",
    )
    schedule.add_argument(
        "--eval",
        type=arguments.episodes,
        dest="evaluate",
        help=f"schedule: deterministic evaluation episodes a round (default {defaults.SCHEDULE_EVALUATE})",
    )
    schedule.add_argument(
        "--confirm",
        type=arguments.checks,
        help=f"schedule: deterministic episodes of the closing check (default {defaults.SCHEDULE_CONFIRM}; "
        "0 for none, the last round's evaluation standing for it)",
    )


def add_evolve(sub: argparse._SubParsersAction) -> None:
    evolve = _command(sub, "evolve", commands.evolve, "one evolution step; waits for EVO_DONE", [network_options(True)])
    evolve.add_argument(
        "--timeout",
        type=seconds,
        default=defaults.EVOLVE_ANSWER_TIMEOUT,
        help=f"seconds to wait for EVO_DONE (default {defaults.EVOLVE_ANSWER_TIMEOUT:g})",
    )
    evolve.add_argument("--json", action="store_true", help="print one JSON object instead of text")


def add_env(sub: argparse._SubParsersAction) -> None:
    parents = [network_options(True), history_option(), tensorboard_option(), environment_options(), seed_option()]
    _command(sub, "env", commands.env, "the environment component alone, like the seed", parents)


def add_export(sub: argparse._SubParsersAction) -> None:
    export = _command(
        sub, "export", commands.export, "write run history as CSV, JSON or TensorBoard event files", [history_option()]
    )
    export.add_argument(
        "--run",
        type=arguments.run_number,
        action="append",
        metavar="N",
        dest="runs",
        help="run number to export (repeatable; default: all runs)",
    )
    export.add_argument("--format", choices=FORMATS, default=FORMATS[0])
    export.add_argument(
        "-o",
        "--output",
        "--out",
        metavar="FILE|DIR",
        help="file to write (default: standard output); for tensorboard the folder, one folder per run in it",
    )


def add_swarm(sub: argparse._SubParsersAction) -> None:
    parents = [
        network_options(True),
        models_option(),
        seed_option(),
        env_id_option("the environment the models are built for (observation size → 16 → 16 → actions)"),
    ]
    swarm = _command(sub, "swarm", commands.swarm, "the built-in models, aggregation and evolution", parents)
    swarm.add_argument("--load", metavar="FILE", help="start from this population file (.npz, see the README)")
    swarm.add_argument("--save", metavar="FILE", help="write the population to FILE after every evolution")
    swarm.add_argument(
        "--only",
        choices=("models", "aggregation", "evolution"),
        help="only this part, beside published components for the others (a mixed network)",
    )


def _bind_options(parser: argparse.ArgumentParser, port: int) -> None:
    parser.add_argument("--host", default=defaults.LOOPBACK, help=f"address to bind (default {defaults.LOOPBACK})")
    parser.add_argument("--port", type=port_number, default=port, help=f"port (default {port})")


def add_broker(sub: argparse._SubParsersAction) -> None:
    broker = _command(sub, "broker", commands.broker, "the broker alone", [token_option()])
    _bind_options(broker, defaults.PORT)
    broker.add_argument(
        "--max-frame",
        type=arguments.frame_bytes,
        default=protocol.DEFAULT_MAX_FRAME,
        help="largest frame accepted, in bytes",
    )
    broker.add_argument(
        "--trust",
        metavar="CIDR",
        type=cidr,
        action="append",
        default=[],
        help="admit clients from these addresses without a token (repeatable; e.g. 127.0.0.1/32)",
    )
    broker.add_argument(
        "--max-per-address",
        metavar="N",
        type=connections,
        default=defaults.MAX_CONNECTIONS_PER_ADDRESS,
        help=f"open connections from one IP address (default {defaults.MAX_CONNECTIONS_PER_ADDRESS})",
    )
    gateway = broker.add_argument_group("gateway mode (rooms shared over NATS)")
    gateway.add_argument(
        "--nats",
        metavar="URL[,URL…]",
        type=nats_servers,
        help="gateway mode: share the rooms with other brokers over this NATS cluster (nats://HOST:4222,…)",
    )
    gateway.add_argument("--network", default="default", help="gateway mode: the network's name on NATS")
    gateway.add_argument("--nats-creds", metavar="FILE", help="gateway mode: NATS credentials file (JWT + NKey)")


def add_serve(sub: argparse._SubParsersAction) -> None:
    parents = [
        network_options(),
        history_option(),
        no_env_option(),
        env_id_option("the environment the network plays"),
        seed_option(),
        agent_option(),
        models_option(),
        fresh_option(),
        redraw_option(),
    ]
    web = _command(sub, "serve", serve.serve, "the control room in a browser, one network for every visitor", parents)
    _bind_options(web, defaults.SERVE_PORT)
    web.add_argument("--public-url", metavar="URL", help="the address browsers use (default http://HOST:PORT)")
    web.add_argument(
        "--max-sessions",
        type=sessions,
        default=defaults.SERVE_MAX_SESSIONS,
        metavar="N",
        help="browser sessions open at once, each a control room process; more get a page saying it is full "
        f"(default {defaults.SERVE_MAX_SESSIONS})",
    )


COMMANDS = (add_run, add_evolve, add_env, add_export, add_swarm, add_broker, add_serve)


def build_parser() -> argparse.ArgumentParser:
    """`cartpole-tui` alone is the control room; each subcommand is added by its builder."""
    parser = OneLineParser(
        prog="cartpole-tui",
        description="A terminal control room for swergio CartPole networks.",
        formatter_class=argparse.RawDescriptionHelpFormatter,  # the epilog's path unbroken
        epilog=f"config file: {config.config_path()}\n  keys: {', '.join(config.KEYS)}; flags override it",
        parents=[*session_options(), tensorboard_option(), fresh_option(), redraw_option()],
    )
    parser.add_argument("--offline", action="store_true", help="no network: browse the run history (--db)")
    parser.set_defaults(func=commands.control_room)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=SubcommandParser)
    for add in COMMANDS:
        add(sub)
    return parser


def apply_config(args: argparse.Namespace, settings: config.Config) -> None:
    """Fill what the flags left unset from the config file (flags win), then check what must be set."""
    if hasattr(args, "connect") and args.connect is None and not getattr(args, "offline", False):
        args.connect = settings.get("connect", address)
    if hasattr(args, "db") and args.db is None:
        args.db = settings.get("db")
        if args.db is not None:  # what a message about it names: the file's line, not a flag not given
            args.db_origin = f"db in {settings.where('db')}"
    if hasattr(args, "redraw_hz"):
        args.redraw_hz = args.redraw_hz or settings.get("redraw_hz", redraw_rate) or defaults.REDRAW_HZ
    if hasattr(args, "token_file") and args.token_file is None:
        args.token_file = os.environ.get(auth.TOKEN_FILE_ENV) or settings.get("token_file")
    args.theme = settings.get("theme")
    args.config_path = settings.path
    if getattr(args, "connect_required", False) and args.connect is None:
        # of the command line: said as its other errors are, "cartpole-tui evolve: …"
        raise UsageError(f"--connect HOST:PORT is required (or connect in {settings.path})")


def check_folders(args: argparse.Namespace) -> None:
    """A file to be written in a folder that does not exist is a usage error naming the folder:
    nothing makes folders the user named (only the default data folder is made)."""
    written = (
        ("--db", "db", (MEMORY,)),
        ("--out", "output", ("-",)),  # as the README and the tensorboard check name it (-o, --output too)
        ("--save", "save", ()),
        ("--tensorboard", "tensorboard", ()),
    )
    for option, dest, unwritten in written:
        path = getattr(args, dest, None)
        if path is None or path in unwritten:
            continue
        folder = arguments.missing_folder(path)
        if folder is not None:
            named = getattr(args, f"{dest}_origin", f"{option} {path}")
            raise UsageError(f"{named}: no folder {folder} (make it first, or name another)")


# `run`'s options that one of its modes plays and the other would ignore: (flag, default), by dest.
# Their parser defaults are None, so that a flag given can be told from one left out.
ONE_RUN_OPTIONS = {"episodes": ("--episodes", defaults.EPISODES), "deterministic": ("--deterministic", False)}
SCHEDULE_OPTIONS = {
    "rounds": ("--rounds", defaults.SCHEDULE_ROUNDS),
    "train": ("--train", defaults.SCHEDULE_TRAIN),
    "evaluate": ("--eval", defaults.SCHEDULE_EVALUATE),
    "confirm": ("--confirm", defaults.SCHEDULE_CONFIRM),
    "target": ("--target", None),
}


def check_run_mode(args: argparse.Namespace) -> None:
    """An option of `run`'s other mode is a usage error naming the conflict (it used to be
    ignored); the options left out take their defaults."""
    if args.command != "run":
        return
    ignored = ONE_RUN_OPTIONS if args.schedule else SCHEDULE_OPTIONS
    for dest, (flag, default) in {**ONE_RUN_OPTIONS, **SCHEDULE_OPTIONS}.items():
        value = getattr(args, dest)
        if value is None or value is False:  # left out (--target 0 is given: not `in (None, False)`)
            setattr(args, dest, defaults.SCHEDULE_TRAIN_JOINED if dest == "train" and args.connect else default)
        elif dest in ignored and args.schedule:
            raise UsageError(
                f"{flag} does nothing with --schedule (a round trains --train episodes and evaluates "
                "--eval episodes deterministically): leave one of them out"
            )
        elif dest in ignored:
            raise UsageError(f"{flag} is for --schedule (one run plays --episodes): add --schedule or leave it out")


# the control room's options that play runs, by dest; --offline plays none
PLAYING_OPTIONS = {
    "connect": "--connect",
    "no_env": "--no-env",
    "parallel": "--parallel",
    "seed": "--seed",
    "agent": "--agent",
    "models": "--models",
    "tensorboard": "--tensorboard",
    "fresh": "--fresh",
}


def check_offline(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    """`--offline` with an option that plays runs (not at the parser's default) is a usage error
    naming it (it was accepted and did nothing); --env-id stays: it chooses the environment whose
    runs the plot holds."""
    if args.command is not None or not args.offline:
        return
    for dest, flag in PLAYING_OPTIONS.items():
        if getattr(args, dest) != parser.get_default(dest):
            raise UsageError(f"{flag} does nothing with --offline (it browses the history, no network): leave one out")


def check_embedded_network(args: argparse.Namespace) -> None:
    """What cannot play on the embedded network is a usage error before anything starts: it has no
    environment but its own (private: nobody else can join), and the random agent no evolution
    (`--no-env` waited forever, `serve`'s visitors too; `--agent random --schedule` 30 s at its first
    evolution)."""
    if args.command not in (None, "run", "serve") or args.connect is not None or getattr(args, "offline", False):
        return
    if args.no_env:
        raise UsageError("--no-env needs --connect HOST:PORT: the embedded network has no other environment")
    if args.command == "run" and args.schedule and args.agent == "random":
        raise UsageError("--schedule evolves the swarm: --agent random has no evolution (leave --agent out)")


def check_tensorboard(args: argparse.Namespace) -> None:
    """TensorBoard output asked for that cannot be is a usage error: no folder named, a file by
    that name, or the extra not installed."""
    if getattr(args, "format", None) in FOLDER_FORMATS:
        if args.output in (None, "-"):
            raise UsageError(f"--format {args.format} writes a folder: name it with --out DIR")
        option, folder = "--out", args.output
    elif getattr(args, "tensorboard", None) is not None:
        option, folder = "--tensorboard", args.tensorboard
    else:
        return
    try:
        tensorboard.require_writer()
    except tensorboard.TensorBoardUnavailable as error:
        raise UsageError(f"{option} {folder}: {error}") from None
    problem = tensorboard.folder_problem(folder)
    if problem is not None:
        raise UsageError(f"{option} {folder}: {problem}")


def check_command_first(args: argparse.Namespace, argv: list[str]) -> None:
    """An option before a subcommand is a usage error naming it: argparse took it as the control
    room's, and the subcommand's default replaced it (`cartpole-tui --db X run` wrote to the
    default history; `--connect H:P evolve` said --connect was required)."""
    if args.command is None or args.command not in argv:
        return
    before = [token for token in argv[: argv.index(args.command)] if token.startswith("-")]
    if before:
        raise UsageError(
            f"{before[0]} before the command applies to nothing: put it after, "
            f"`cartpole-tui {args.command} {before[0]} …`"
        )


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        check_command_first(args, argv)
        apply_config(args, config.load(checks={"connect": address, "redraw_hz": redraw_rate}))
        check_offline(args, parser)  # first: an option that does nothing here is the error to fix
        check_folders(args)
        check_run_mode(args)
        check_embedded_network(args)
        check_tensorboard(args)
        auth.use_token(auth.read_token_file(args.token_file) if getattr(args, "token_file", None) else None)
    except UsageError as error:  # of the command line: named after the command, as argparse's are
        print(f"cartpole-tui{f' {args.command}' if args.command else ''}: {error}", file=sys.stderr)
        return EXIT_USAGE
    except (config.ConfigError, auth.TokenError) as error:
        print(f"cartpole-tui: {error}", file=sys.stderr)
        return EXIT_USAGE
    try:
        return _dispatch(args) or 0
    except CommandError as error:
        print(f"cartpole-tui: {error}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        print("cartpole-tui: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # e.g. `cartpole-tui export | head`: the reader has all it wanted
        sys.stderr.close()
        return 0


def _dispatch(args: argparse.Namespace) -> int | None:
    if args.command is not None:  # the control room draws on the terminal: no log lines there
        # (a peer's text in a line, a NAME or a model's id, reaches the terminal without its control characters)
        protocol.printable_logs(
            logging.INFO if args.command in CHATTY else logging.WARNING, "%(asctime)s %(levelname)s %(message)s"
        )
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
