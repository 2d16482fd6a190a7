"""Episode stores, demo collection and training windows."""
