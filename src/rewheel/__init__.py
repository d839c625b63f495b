"""rewheel: rebuild a Python dependency tree from source and serve it as a package index."""

__version__ = "0.1.0"
