"""The errors every layer raises: a user-facing problem is an InputError (the CLI prints its
one-line message and exits 2, no traceback)."""

from __future__ import annotations


class InputError(Exception):
    """A user-facing problem with input data or configuration (no traceback shown)."""
