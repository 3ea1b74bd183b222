"""Lifecycle stages: the state machine in which time is data, and the P(alive) rule."""
