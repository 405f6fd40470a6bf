"""`python -m vitkit ...` (and `torchrun -m vitkit train ...`) run the vitkit command line."""

import sys

from vitkit.cli.main import main

if __name__ == "__main__":
    sys.exit(main())
