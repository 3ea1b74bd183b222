"""Customer value: RFM figures and cells, quantiles, lifetime value, Pareto."""
