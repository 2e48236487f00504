"""Recipients, lists, imports, export and erasure."""
