"""The version, alone, so that anything may read it without importing the package's public names."""

__version__ = "0.2.0"
