"""``python -m cartpole_tui``: the same as the ``cartpole-tui`` command."""

import sys

from cartpole_tui.tui.cli.parser import main

sys.exit(main())
