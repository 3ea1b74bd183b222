"""``touchstream bench``: the figures the issues ask for, each beside a baseline measured
in the same run on the same machine. Timing lives here, never in unit tests."""
