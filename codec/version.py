"""The vqcodec release this code is (also pyproject.toml's `version`); a module of its own so that every
layer can name it without importing the package root (which imports the public API)."""

__version__ = "0.9.0"
