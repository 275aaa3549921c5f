"""Collectors: run in CI, compute KPMs from a build's outputs and upload them over HTTP."""
