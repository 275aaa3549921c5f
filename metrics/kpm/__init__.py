"""Key performance metrics computed from pipeline outputs (pure numpy; no I/O)."""
