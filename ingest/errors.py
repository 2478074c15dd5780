"""Errors that stop a command before any file is touched: one plain line, exit code 2.

A module of its own so that the catalog (which raises one where its file system cannot keep
it) and the argument checks (ingest.preflight) can both use it without importing each other.
"""


class UsageError(Exception):
    """A bad argument or environment: one clear line for the user, exit code 2."""
