"""Errors raised by the ingest path.

``SourceError`` is a :class:`meetvar.errors.UserError`, so the CLI prints its one-line message (which
says what to do) without a traceback. ``ChunkDecodeError`` is for the pose worker: it logs the chunk as a
gap and goes on with the stream.
"""

from __future__ import annotations

from meetvar.errors import UserError


class SourceError(UserError):
    """A video source cannot be opened or decoded. The message is one line and says what to do."""


class ChunkDecodeError(Exception):
    """A chunk's bytes do not decode, standalone, to the frames its metadata promises."""
