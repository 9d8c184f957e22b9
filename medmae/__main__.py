"""``python -m medmae ...`` and ``torchrun --nproc-per-node N -m medmae ...``: the medmae CLI."""

import sys

from medmae.cli.main import main

sys.exit(main())
