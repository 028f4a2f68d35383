"""The user-error type every layer raises: a mistake the person at the terminal can fix.

Its message names the problem and the fix on one line. The command line (`fr3e.cli.common.run_cli`) prints
it as `error: <message>` with exit status 2 and no traceback; anything that is not a UserError keeps its
traceback. `fr3e.training.config.ConfigError` and `fr3e.data.paper.DataError` are UserErrors.
"""


class UserError(Exception):
    """A mistake the user can fix; the message names the problem and the fix, on one line."""
