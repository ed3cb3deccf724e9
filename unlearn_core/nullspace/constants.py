"""Numerical constants of the retained-space computations."""

NULLSPACE_CACHE_VERSION = 1
# Directions whose share of the energy is below this are numerically zero:
# the stored per-class factors drop them, and eps=1 does not count them.
ENERGY_TOLERANCE = 1e-10
