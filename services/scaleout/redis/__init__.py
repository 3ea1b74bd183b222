"""The Redis view store: keys, the typed fenced partition commit, segments."""
