"""Next-best-contact shell: rule files read from disk (the rules themselves: projections.nbc.rules)."""
