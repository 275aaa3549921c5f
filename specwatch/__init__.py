"""Specwatch: continuous metric verification."""
