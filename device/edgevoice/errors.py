"""The one error type for a user's mistake: bad config, a bad file or device name, a busy store.

Its message is one line naming the bad thing (never a secret's value); the console script prints it
and exits 2. Everything else that escapes is a bug or an outage and keeps its traceback.
"""

from __future__ import annotations


class UserError(Exception):
    """Bad input; `str(e)` is one line naming what is wrong. The CLI exits 2."""
