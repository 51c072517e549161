"""The validator daemon (not implemented yet; the entry point checks its configuration)."""
