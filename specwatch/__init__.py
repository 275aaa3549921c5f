"""Specwatch: continuous metric verification."""

__version__ = "0.1.0"
