"""The package version (pyproject.toml holds the same string)."""

__version__ = "3.0.0.dev0"
