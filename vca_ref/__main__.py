"""``python -m vca_ref``: the same as the ``vca-ref`` command."""
import sys

from vca_ref.cli import main

if __name__ == "__main__":
    sys.exit(main())
