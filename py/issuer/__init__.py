"""Organization-scoped tokens with pooled, seat-gated credits."""

__version__ = "0.1.0"
