"""``python -m facskit`` (what ``torchrun -m facskit train ...`` runs)."""

import sys

from facskit.cli import main

sys.exit(main())
