"""`python -m fr3e`: the `fr3e` command (fr3e.cli.command)."""

import sys

from fr3e.cli.command import main

sys.exit(main())
