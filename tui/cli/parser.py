"""`cartpole-tui` and its subcommands.

Bad input gets one clear line on stderr and a non-zero exit (2 for usage, 1 for a
failure at run time), never a traceback.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from cartpole_tui.env import defaults
from cartpole_tui.env.history.export import FORMATS
from cartpole_tui.env.wire import auth, batch, protocol
from cartpole_tui.env.wire.gateway import parse_servers
from cartpole_tui.env.wire.transport import parse_address
from cartpole_tui.tui.cli import commands, config, serve
from cartpole_tui.tui.cli.errors import EXIT_FAILURE, EXIT_INTERRUPTED, EXIT_USAGE, CommandError


class OneLineParser(argparse.ArgumentParser):
    """argparse, but an error is one line naming the command, and a hint to --help."""

    def error(self, message: str):
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see --help)\n")


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {value}")
    return value


def instances(text: str) -> int:
    value = positive_int(text)
    if value > batch.MAX_INSTANCES:
        raise argparse.ArgumentTypeError(f"expected at most {batch.MAX_INSTANCES} instances, got {value}")
    return value


def _parallel_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--parallel",
        type=instances,
        default=defaults.PARALLEL,
        metavar="N",
        help=f"environment instances a run plays at once when every agent understands batches "
        f"(default {defaults.PARALLEL}; 1 = one at a time, as the published network)",
    )


def address(text: str) -> str:
    try:
        parse_address(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    return text


def seconds(text: str) -> float:
    """A time-out: a finite number of seconds above zero (at most a day)."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 < value <= 86_400:
        raise argparse.ArgumentTypeError(f"expected seconds above 0 (at most 86400), got {text!r}")
    return value


def redraw_rate(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0.1 <= value <= 30:
        raise argparse.ArgumentTypeError(f"expected repaints a second between 0.1 and 30, got {text!r}")
    return value


def cidr(text: str):
    try:
        return auth.parse_networks([text])[0]
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def port_number(text: str) -> int:
    if not text.isdigit() or not 0 <= int(text) < 65536:
        raise argparse.ArgumentTypeError(f"expected a port 0-65535, got {text!r}")
    return int(text)


def nats_servers(text: str) -> list[str]:
    try:
        return parse_servers(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _network_options(parser: argparse.ArgumentParser, connect_required: bool = False) -> None:
    # Required ones may come from the config file: checked once it is applied (main).
    parser.set_defaults(connect_required=connect_required)
    parser.add_argument(
        "--connect",
        metavar="HOST:PORT",
        type=address,
        help="join this swergio broker" + ("" if connect_required else " instead of starting the embedded network"),
    )
    _token_option(parser)


def _token_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--token-file",
        metavar="FILE",
        help=f"the broker's token (mode 600; default ${auth.TOKEN_FILE_ENV}, or token_file in the config file)",
    )


def _db_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--db", metavar="PATH", help="run history database (default: in your data directory; :memory: keeps nothing)"
    )


def _session_options(parser: argparse.ArgumentParser) -> None:
    _network_options(parser)
    _db_option(parser)
    parser.add_argument(
        "--no-env", action="store_true", help="do not run the environment here (the network has its own)"
    )
    parser.add_argument("--env-id", default=defaults.ENV_ID, help="gymnasium environment id (discrete actions)")
    parser.add_argument("--seed", type=int, help="seed for the environment and the built-in agents")
    parser.add_argument(
        "--agent",
        choices=defaults.AGENTS,
        default=defaults.AGENT,
        help="built-in agents of the embedded network: the learning swarm, or a random policy",
    )
    parser.add_argument("--models", type=positive_int, default=defaults.MODELS, help="models in the built-in swarm")
    _parallel_option(parser)


def _redraw_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--fresh",
        action="store_true",
        help="the built-in swarm starts from random weights, not the population saved beside --db",
    )
    parser.add_argument(
        "--redraw-hz",
        type=redraw_rate,
        metavar="HZ",
        help="repaints a second of the cart and progress (the plot at half that); "
        f"raise it on a fast link (default {defaults.REDRAW_HZ:g})",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="cartpole-tui",
        description="A terminal control room for swergio CartPole networks.",
        formatter_class=argparse.RawDescriptionHelpFormatter,  # the epilog's path unbroken
        epilog=f"config file: {config.config_path()}\n  keys: {', '.join(config.KEYS)}; flags override it",
    )
    _session_options(parser)
    parser.add_argument("--offline", action="store_true", help="no network: browse the run history (--db)")
    _redraw_option(parser)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=OneLineParser)

    run = sub.add_parser("run", help="one run headless, with a progress bar; prints the run's average")
    _session_options(run)
    run.add_argument(
        "--episodes",
        type=positive_int,
        default=defaults.EPISODES,
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
    run.add_argument(
        "--schedule",
        action="store_true",
        help="rounds of (train, evaluate deterministically, evolve) instead of one run",
    )
    run.add_argument("--rounds", type=positive_int, default=defaults.SCHEDULE_ROUNDS, help="schedule: most rounds")
    run.add_argument(
        "--train", type=positive_int, default=defaults.SCHEDULE_TRAIN, help="schedule: training episodes a round"
    )
    run.add_argument(
        "--eval",
        type=positive_int,
        default=defaults.SCHEDULE_EVALUATE,
        dest="evaluate",
        help="schedule: deterministic evaluation episodes a round",
    )

    evolve = sub.add_parser("evolve", help="one evolution step; waits for EVO_DONE")
    _network_options(evolve, connect_required=True)
    evolve.add_argument(
        "--timeout",
        type=seconds,
        default=defaults.EVOLVE_ANSWER_TIMEOUT,
        help=f"seconds to wait for EVO_DONE (default {defaults.EVOLVE_ANSWER_TIMEOUT:g})",
    )

    env = sub.add_parser("env", help="the environment component alone, like the seed")
    _network_options(env, connect_required=True)
    env.add_argument("--env-id", default=defaults.ENV_ID, help="gymnasium environment id (discrete actions)")
    env.add_argument("--seed", type=int)
    _parallel_option(env)
    _db_option(env)

    export = sub.add_parser("export", help="write run history as CSV or JSON")
    _db_option(export)
    export.add_argument(
        "--run",
        type=positive_int,
        action="append",
        metavar="N",
        dest="runs",
        help="run number to export (repeatable; default: all runs)",
    )
    export.add_argument("--format", choices=FORMATS, default=FORMATS[0])
    export.add_argument("-o", "--output", metavar="FILE", help="file to write (default: standard output)")

    swarm = sub.add_parser("swarm", help="the built-in models, aggregation and evolution")
    _network_options(swarm, connect_required=True)
    swarm.add_argument(
        "--models", type=positive_int, default=defaults.MODELS, help=f"models in the swarm (default {defaults.MODELS})"
    )
    swarm.add_argument("--seed", type=int)
    swarm.add_argument("--load", metavar="FILE", help="start from this population file (.npz, see the README)")
    swarm.add_argument("--save", metavar="FILE", help="write the population to FILE after every evolution")
    swarm.add_argument(
        "--only",
        choices=("models", "aggregation", "evolution"),
        help="only this part, beside published components for the others (a mixed network)",
    )

    broker = sub.add_parser("broker", help="the broker alone")
    broker.add_argument("--host", default=defaults.LOOPBACK, help=f"address to bind (default {defaults.LOOPBACK})")
    broker.add_argument("--port", type=port_number, default=defaults.PORT, help=f"port (default {defaults.PORT})")
    broker.add_argument(
        "--max-frame", type=positive_int, default=protocol.DEFAULT_MAX_FRAME, help="largest frame accepted, in bytes"
    )
    broker.add_argument(
        "--nats",
        metavar="URL[,URL…]",
        type=nats_servers,
        help="gateway mode: share the rooms with other brokers over this NATS cluster (nats://HOST:4222,…)",
    )
    broker.add_argument("--network", default="default", help="gateway mode: the network's name on NATS")
    broker.add_argument("--nats-creds", metavar="FILE", help="gateway mode: NATS credentials file (JWT + NKey)")
    _token_option(broker)
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
        type=positive_int,
        default=defaults.MAX_CONNECTIONS_PER_ADDRESS,
        help=f"open connections from one IP address (default {defaults.MAX_CONNECTIONS_PER_ADDRESS})",
    )

    web = sub.add_parser("serve", help="the control room in a browser, one network for every visitor")
    web.add_argument("--host", default=defaults.LOOPBACK, help=f"address to bind (default {defaults.LOOPBACK})")
    web.add_argument(
        "--port", type=port_number, default=defaults.SERVE_PORT, help=f"port (default {defaults.SERVE_PORT})"
    )
    web.add_argument("--public-url", metavar="URL", help="the address browsers use (default http://HOST:PORT)")
    _network_options(web)
    _db_option(web)
    web.add_argument("--no-env", action="store_true", help="do not run an environment (the network has its own)")
    web.add_argument("--agent", choices=defaults.AGENTS, default=defaults.AGENT, help="the embedded network's agents")
    web.add_argument("--models", type=positive_int, default=defaults.MODELS, help="models in the built-in swarm")
    web.add_argument("--seed", type=int, help="seed for the environment and the built-in agents")
    _redraw_option(web)
    return parser


def apply_config(args: argparse.Namespace, settings: config.Config) -> None:
    """Fill what the flags left unset from the config file (flags win), then check what must be set."""
    if hasattr(args, "connect") and args.connect is None and not getattr(args, "offline", False):
        args.connect = settings.get("connect", address)
    if hasattr(args, "db") and args.db is None:
        args.db = settings.get("db")
    if hasattr(args, "redraw_hz"):
        args.redraw_hz = args.redraw_hz or settings.get("redraw_hz", redraw_rate) or defaults.REDRAW_HZ
    if hasattr(args, "token_file") and args.token_file is None:
        args.token_file = os.environ.get(auth.TOKEN_FILE_ENV) or settings.get("token_file")
    args.theme = settings.get("theme")
    args.config_path = settings.path
    if getattr(args, "connect_required", False) and args.connect is None:
        raise config.ConfigError(f"{args.command}: --connect HOST:PORT is required (or connect in {settings.path})")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        apply_config(args, config.load(checks={"connect": address, "redraw_hz": redraw_rate}))
        auth.use_token(auth.read_token_file(args.token_file) if getattr(args, "token_file", None) else None)
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
    if args.command is None:
        return commands.control_room(args)
    logging.basicConfig(
        level=logging.INFO if args.command in ("broker", "env", "serve") else logging.WARNING,
        format="%(asctime)s %(levelname)s %(message)s",
        stream=sys.stderr,
    )
    if args.command == "serve":
        return serve.serve(args)
    return getattr(commands, args.command)(args)


if __name__ == "__main__":
    sys.exit(main())
