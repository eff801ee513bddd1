"""``python -m pneumoscan`` runs the command line."""

import sys

from pneumoscan.cli import main

sys.exit(main())
