"""Importers: benchmark results of other tools (asv, pytest-benchmark, Google Benchmark) as jobs."""
