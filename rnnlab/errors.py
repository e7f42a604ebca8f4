"""rnnlab's own error type: bad input from a user, reported by the CLI as one line."""

from __future__ import annotations


class RnnlabError(ValueError):
    """A user-facing error: bad input, a missing or corrupted file, an impossible option.

    A subclass of ``ValueError`` so that library callers can catch either.
    """
