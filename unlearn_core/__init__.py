"""Unlearning Lab core: data sets, models, training, forget sets, unlearning
methods, metrics and the run pipeline, with no UI dependency.

Everything the dashboard can do, a script can do through this package.
"""

__version__ = "0.1.0"
