"""Reliability under load and faults: real processes, measured (see harness.py)."""
