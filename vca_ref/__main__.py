"""``python -m vca_ref``: the same as the ``vca-ref`` command."""
import sys

from .cli import main

sys.exit(main())
