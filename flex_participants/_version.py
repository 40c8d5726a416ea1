"""The version of the package, read by the build and by the client's User-Agent."""

__version__ = "0.1.0"
