"""Video sources: decoded, normalised frames with media timestamps."""

from ingest.sources.file import FileSource, FrameNormalizer, SourceFrame, is_url, open_source, orientation_ops

__all__ = ["FileSource", "FrameNormalizer", "SourceFrame", "is_url", "open_source", "orientation_ops"]
