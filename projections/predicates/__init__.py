"""The predicate language over a view's facts, the facts catalogue, rule errors."""
