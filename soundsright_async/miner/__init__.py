"""The miner daemon (not implemented yet; the entry point checks its configuration)."""
