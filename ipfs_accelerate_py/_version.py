"""The package's version, in a module of its own: the package root re-exports it,
pyproject reads it from here without importing anything, and a lower layer (the
User-Agent in ``transport.environment``) reads it without importing the root."""

__version__ = "0.1.0"
