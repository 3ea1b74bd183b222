"""Customer segments: definitions compiled from facts that cannot go stale, membership."""
