"""``python -m jepa ...`` is the ``jepa`` command (e.g. under ``torchrun``)."""

import sys

from jepa.training.cli import main

sys.exit(main())
