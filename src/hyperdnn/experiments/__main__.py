"""``python -m hyperdnn.experiments``: the ``hyperdnn`` command."""

import sys

from hyperdnn.experiments.cli import main

sys.exit(main())
