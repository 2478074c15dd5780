"""ingest: copy a camera card to several destinations and prove every copy intact."""

__version__ = "0.1.0"
