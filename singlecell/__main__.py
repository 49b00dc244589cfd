"""``python -m singlecell`` is the ``singlecell`` command."""

import sys

from singlecell.cli import main

if __name__ == "__main__":
    sys.exit(main())
