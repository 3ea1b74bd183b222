"""The 360° customer view: its state, its fold, its documents and facts."""
