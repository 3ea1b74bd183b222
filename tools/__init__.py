"""Tooling outside the production import graph: benchmarks, the synthetic traffic generator,
the local stack (Tansu broker, private Redis). Production modules never import it; the
``touchstream`` command line exposes its commands."""
