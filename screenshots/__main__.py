"""The README's pictures, from a live, seeded session: ``python -m screenshots [DIR] [--no-serve]``.

Run from the repository's root (default DIR: screenshots/). The control room starts its
embedded network (a real broker on 127.0.0.1, the built-in swarm, gymnasium) with seed 1 and a
fresh population in a scratch history (no user data is read or written), learns with the
schedule (`r`) until it solves, and is shot at 80x24 and 120x40 under ``App.run_test``
(screenshots/live.py); Acrobot-v1 learned the same way in a history of its own, shot at 120x40
with its pane drawn from the environment's pictures; then `serve` on the first history, with
the solved population, is shot in headless Chromium as serve.png (screenshots/browser.py; --no-serve skips it).

The pictures differ from run to run in small ways: clocks, ports, steps/s, run durations
and the moment the cart is caught. The deterministic snapshot test of the main screen uses
screenshots/demo_history.py instead (offline, fixed clocks).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile

from screenshots.live import scratch_db, shoot_other_environment, shoot_session


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m screenshots", description=__doc__.split("\n\n")[0])
    parser.add_argument("directory", nargs="?", default="screenshots")
    parser.add_argument("--no-serve", action="store_true", help="skip serve.png (needs chromium and playwright)")
    args = parser.parse_args(argv)
    directory = os.path.abspath(args.directory)
    os.makedirs(directory, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="screenshots-") as scratch:
        db_path = scratch_db(scratch)
        asyncio.run(shoot_session(directory, db_path))
        asyncio.run(shoot_other_environment(directory, os.path.join(scratch, "other.sqlite3")))
        if not args.no_serve:
            from screenshots.browser import shoot_serve

            shoot_serve(directory, db_path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
