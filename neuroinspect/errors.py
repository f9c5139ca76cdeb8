"""Errors a user can cause. The command line prints them as one message and exits with status 2."""

from __future__ import annotations


class UserError(Exception):
    """A failure the user can fix: bad input, missing files, a mismatched checkpoint.

    ``str(err)`` is the complete message, ending with what to do about it.
    """

    exit_code = 2


class DataError(UserError):
    """A dataset root is missing, malformed, or contains an unreadable file."""


class CheckpointError(UserError):
    """A checkpoint cannot be read or does not match the requested model / dataset."""


class RecordError(UserError):
    """A result record does not follow the schema; the message names the field."""
