"""The dashboard's pages: each module declares its path with ``registry.page``."""
