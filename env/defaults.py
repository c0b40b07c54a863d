"""Every default a user can see or change, in one place.

Beside env/'s stack (wire < components < history < swarm < runtime), below every layer:
each may import it, as may ``tui/``; it imports nothing. The command line's ``--help``,
the app's help screen, the swarm and the app all read these names; change a value here
and it changes everywhere.
"""

from __future__ import annotations

# --- the network -----------------------------------------------------------------------
LOOPBACK = "127.0.0.1"
PORT = 8080  # the published RLGym scripts' port
SERVE_PORT = 8000  # `cartpole-tui serve`: the web page
# Each browser session of `serve` is a control room process (~70 MB); a terminal of C x R cells
# costs the app memory in proportion, so sizes asked for by a page are clamped to these.
SERVE_MAX_SESSIONS = 8
SERVE_MAX_COLUMNS = 500
SERVE_MAX_ROWS = 200
ENV_ID = "CartPole-v1"
SOLVED_SCORE = 475.0  # CartPole-v1's reward threshold (other environments: their spec.reward_threshold)
EPISODE_MAX_SCORE = 500.0  # CartPole-v1's best episode (500 steps, reward 1 a step)
SCORE_MAX = 1e12  # |score| of an episode, a run's average or a target: far beyond any real return
ENV_ID_MAX = 80  # characters of an environment id (--env-id, ENV_ID in RUN_STARTED, a population file)
ENV_OBSERVATIONS_MAX = 1024  # observation size of an environment we play (a 1-D Box)
ENV_ACTIONS_MAX = 64  # discrete actions of an environment we play
FRAME_HZ = 5.0  # pictures a second of a non-CartPole environment's instance 0 for the environment pane
FRAME_DOTS = (64, 48)  # the most dots (wide, high) such a picture has: ~400 bytes a picture

# --- the broker's door (env/wire/admission.py, env/wire/broker.py) ---------------------
REGISTER_TIMEOUT = 10.0  # s a connection may stay without a REGISTER (and its NAME) before it is closed
MAX_CONNECTIONS_PER_ADDRESS = 256  # open connections from one IP address; more are closed as they arrive
AUTH_FREE_TRIES = 5  # refusals (e.g. wrong tokens) an address may have before it is backed off
AUTH_BACKOFF = (0.5, 10.0)  # s an address is backed off after its free tries: first, doubling up to longest
AUTH_FORGET = 60.0  # s without a refusal after which an address starts afresh
REFUSAL_LOG_INTERVAL = 10.0  # s: refusals are logged once per reason per interval, the rest summed up
MIN_TOKEN = 16  # characters a token file must hold at least
# REGISTERs one connection may send (a client registers once; a name flood from one socket is refused)
REGISTERS_PER_CONNECTION = 16

# --- limits --------------------------------------------------------------------------------
# What a number a user or a peer gives may be, held here only: the command line's option types
# (tui/cli/arguments.py), the app's episodes field and the environment's start (env/wire/protocol.py,
# batch.py) all check against these, so a value one of them takes is never refused by another.
EPISODES_MAX = 1_000_000  # episodes one run may ask for: --episodes, --train, --eval, the field, NR_OF_EPISODE
SEED_MAX = 2**32 - 1  # numpy's and gymnasium's seed range: seeds are 0..SEED_MAX
PARALLEL_MAX = 1024  # instances of one vectorised run: --parallel, PARALLEL
MODELS_MAX = 1000  # models of the built-in swarm: --models (a population report of more is not ours)
ROUNDS_MAX = 10_000  # rounds of a schedule: --rounds
RUN_NUMBER_MAX = 2**63 - 1  # a run's number in the history (SQLite's INTEGER): export --run
FRAME_MIN, FRAME_MAX = 1024, 2**30  # bytes a broker's largest frame may be set to: --max-frame
CONNECTIONS_MAX = 65_536  # --max-per-address (a process has fewer descriptors)
SESSIONS_MAX = 1_000  # serve --max-sessions (each visit is a process)

# --- the built-in swarm ------------------------------------------------------------------
MODELS = 20  # the published network's hard-coded population size
AGENT = "swarm"  # or "random"
AGENTS = ("swarm", "random")
MODEL_ANSWER_TIMEOUT = 2.0  # s an aggregation waits for a step's missing LOGITS
EVOLUTION_GATHER_TIMEOUT = 5.0  # s our evolution waits for WEIGHTS and CONTRIBUTION after GET
# bytes of weights (before base64) one BATCH_WEIGHTS message carries, answer or SET: more go in
# several (100 models of 1,024 observations were 35 MiB in one, over a broker's 16 MiB frame, and the
# broker cut the pool off); one model a message at least
BATCH_WEIGHTS_MAX_BYTES = 2**20
# Models whose votes a deterministic step counts once solo episodes were played: the fittest of the
# last training (ties in), not all 20 — mostly fresh mutants, they outvoted a solver for rounds.
# 3, not 1: one episode each picked lucky models too; with five each (SCHEDULE_TRAIN) 1, 2 and 3 did
# about as well, 5 worse (python -m bench.learn: genetic.py's docstring).
# A whole swarm keeps that vote in its population file (voters), so a restart plays the same.
VOTERS = 3

# --- vectorised runs (env/components/vector_env.py) ------------------------------------------
# Instances the environment plays at once when every agent understands batches. Chosen by
# measurement (python -m bench.swarm --parallel 20 50 100 200): 20 gave ~11x the N = 1
# swarm, 50-200 17-19x (equal within this machine's noise); 100 also plays the schedule's
# 100-episode check in one batch. See README "Performance".
PARALLEL = 100
CENSUS_TIMEOUT = 0.5  # s to wait for the broker's census before a run starts with one instance

# --- runs and the control client ------------------------------------------------------
EPISODES = 20
RUN_IDLE_TIMEOUT = 60.0  # s a run may go without progress before the control client gives up
RUN_IDS_KEPT = 100_000  # RUN_IDs an environment remembers having played (a start reusing one is refused)
EVOLVE_ANSWER_TIMEOUT = 30.0  # s `evolve` and the app's `e` wait for EVO_DONE
# s another control room's schedule is taken as going after its last run ended (its evolution
# waits up to EVOLVE_ANSWER_TIMEOUT); a room gone without its SCHEDULE_ENDED is forgotten then
SCHEDULE_GAP_TIMEOUT = EVOLVE_ANSWER_TIMEOUT + 5.0
CONNECT_TIMEOUT = 5.0  # s to reach a broker
# s to wait, after joining an address we did not start, for a sign of what answers there: our
# broker answers at once, a line-based server (HTTP…) within a round trip; swergio.Server never.
BROKER_CHECK_TIMEOUT = 1.0
# s a closing client waits for the broker to let it go after its DISCONNECT: swergio.Server relays
# a frame to a socket closed before it read the DISCONNECT with an error that drops the frame's
# sender (the app's control client, its probe closed just before it joined)
DISCONNECT_WAIT = 1.0
STOP_ANSWER_TIMEOUT = 2.0  # s an interrupted `run` waits for the environment's ENV_DONE after STOP
RUN_END_TOLD_WAIT = 2.0  # s `run`, its ENV_DONE in, waits for its session to have the run's figures in the history
# The published evolution answers one request up to 21 times. Before a new request the
# control client waits until EVO_DONEs have been quiet this long (at most EVOLVE_DRAIN_MAX s),
# so a trailing answer of the last request is not taken as the answer to the new one.
EVOLVE_DRAIN_QUIET = 0.3
ENV_PROBE_TIMEOUT = 1.0  # s to wait for our broker's stats when looking for another environment
# s for the environment started here to answer a state query before anything is sent to it (asked
# again after ENV_LISTEN_RETRY s, doubled up to ENV_LISTEN_RETRY_MAX: a slow one is not asked 40
# times): swergio.Server may route a START before that environment's JOINROOM
ENV_LISTEN_TIMEOUT = 10.0
ENV_LISTEN_RETRY = 0.25
ENV_LISTEN_RETRY_MAX = 2.0
# s between two RUN_STATE answers of the environment: queries meanwhile get one answer when it is
# over (any RUN_STATE serves every room catching up). Each answer carries up to MAX_STATE_SCORES
# episodes to every member of `control`: a peer's 1,000 queries a second (100 kB/s) brought a run
# to a halt and the broker closed a control room that could not keep up
STATE_ANSWER_INTERVAL = 0.1
# s without a new observation in a run before it is said to stall: the broker's stats (the log, `run`)
# and the app's progress line ("no step for 3s: …") say it at the same time
STALL_SECONDS = 3.0
# The control client listens to ``logits`` (to name a model that did not answer) only while runs
# play at most this many observations a second: the published network's 10-40, not our swarm's 1,000s.
MODEL_CENSUS_MAX_RATE = 100.0
MODEL_CENSUS_MAX_IDS = 1000  # model ids (COMPONENT_ID) the control client keeps; the others are let go
# A new run's first observation waits at most this long for the last observation's ACTION.
FIRST_OBSERVATION_WAIT = 1.0
EVOLVE_DRAIN_MAX = 3.0

# --- the learning schedule (`r`, `run --schedule`) --------------------------------------
SCHEDULE_ROUNDS = 40
# episodes a round: five solo episodes per model of the default swarm, played at once (PARALLEL), so
# a round costs its longest episode as one a model did, and a model's fitness is a mean of five, not
# one lucky or unlucky episode (python -m bench.learn: genetic.py's docstring)
SCHEDULE_TRAIN = 5 * MODELS
# ... and on a network joined (--connect; the published one, say): one episode a model, the published
# round; its runs play one instance at a time at 10-30 steps/s, where five a model were 5x the round
SCHEDULE_TRAIN_JOINED = MODELS
SCHEDULE_EVALUATE = 5  # deterministic episodes a round
SCHEDULE_CONFIRM = 100  # deterministic episodes of the closing check
SCHEDULE_TARGET = SOLVED_SCORE

# --- the control room ---------------------------------------------------------------------
# Measured over a pty (python -m bench.app): each repaint of the plot costs ~2 KiB at 80x24,
# so 2 Hz (the plot at half that) keeps a live run near 8 KiB/s for slow SSH links.
REDRAW_HZ = 2.0
PLOT_WINDOWS = (1, 10, 50, 100, 500)  # the smoothing windows `w` steps through
PLOT_WINDOW = 100  # the plot's smoothing window at start
PLOT_LAST_N = 1000  # `a` shows only this many latest episodes
PLOT_OVERLAYS = 8  # marked runs drawn over the plot at most
POPULATION_GENERATIONS = 40  # generations the population pane keeps

# --- TensorBoard (`export --format tensorboard`, `--tensorboard DIR`) -----------------------
TENSORBOARD_NAME_MAX = 64  # characters of a run id kept in its folder's name
TENSORBOARD_OPEN_RUNS = 4  # run folders a mirror keeps open at once (the oldest is closed past it)
