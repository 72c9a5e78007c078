"""Video sources: decoded, normalised frames with media timestamps."""

from ingest.sources.file import FileSource, SourceFrame, is_url, open_source, orientation_ops

__all__ = ["FileSource", "SourceFrame", "is_url", "open_source", "orientation_ops"]
