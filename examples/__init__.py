"""Examples the docs use (sweep files, model factories)."""
