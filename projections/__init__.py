"""The functional core of Touchstream: typed touchpoints in, customer views out.

Standard library only: no I/O, no clock, no randomness. Time and ids arrive in events,
so replaying the same log gives byte-identical projections.
"""
