"""Errors a user can act on. The CLI prints their message as one line, with no traceback."""

from __future__ import annotations


class UserError(Exception):
    """An expected failure: bad input, a busy port, an unreachable service. The message says what to do."""

    exit_code = 2


class NoPersonError(UserError):
    exit_code = 3
