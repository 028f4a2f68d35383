"""`python -m fr3e`: the `fr3e` command (fr3e.command)."""

import sys

from fr3e.command import main

sys.exit(main())
