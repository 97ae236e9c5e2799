"""A link health and metadata crawler for Markdown reference lists."""

__version__ = "0.1.0"
