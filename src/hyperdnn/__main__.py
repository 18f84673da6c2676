"""``python -m hyperdnn``: the ``hyperdnn`` command (also ``torchrun -m hyperdnn``)."""

import sys

from hyperdnn.experiments.cli import main

sys.exit(main())
