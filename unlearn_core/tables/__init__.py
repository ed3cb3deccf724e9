"""Comparison tables and judgement rules on plain pandas frames (no UI): the Results table of runs
(:mod:`.runs`), a sweep's cells (:mod:`.grids`), uncertainty over seeds (:mod:`.seeds`) and the sampling noise of
one seed's accuracies (:mod:`.noise`).

The dashboard draws these frames; a script or a report export can build the same ones.
"""

from unlearn_core.tables.grids import (COLOUR_BY, MAX_GRID_VALUES, categorical_axis, cell_frame, cell_label,
                                       failure_rows, forget_metric, grid_values, gridable,
                                       parse_grid_text, pareto_front, phase_matrix, retain_metric, run_counts,
                                       spec_cells, varied_params)
from unlearn_core.tables.runs import (DECIMALS, DISPLAY, FORGOT_FLOOR, FORGOT_SHARE, GAP_COLUMNS, HELP, METRIC_COLUMNS,
                                      NOT_CANDIDATES, REFERENCE_METHODS, SPEED_COLUMN, WIDTHS, as_report, best_cells,
                                      display_frame, forgot, judged_table, metrics_table, over_unlearning_summary,
                                      per_class_shift, run_sample_sizes, shown_csv)
from unlearn_core.tables.noise import LEGEND as NOISE_LEGEND
from unlearn_core.tables.noise import binomial_margin, sample_sizes, wilson_interval
from unlearn_core.tables.seeds import best_over_seeds, ensemble_band, interval_text, missing_seed_runs, seed_groups

__all__ = ["COLOUR_BY", "DECIMALS", "DISPLAY", "FORGOT_FLOOR", "FORGOT_SHARE", "GAP_COLUMNS", "HELP",
           "MAX_GRID_VALUES", "METRIC_COLUMNS", "NOISE_LEGEND", "NOT_CANDIDATES", "REFERENCE_METHODS",
           "SPEED_COLUMN", "WIDTHS", "as_report", "best_cells", "best_over_seeds", "binomial_margin",
           "categorical_axis", "cell_frame", "cell_label", "display_frame", "ensemble_band", "failure_rows",
           "forget_metric", "forgot", "grid_values", "gridable", "interval_text", "judged_table", "metrics_table",
           "missing_seed_runs", "over_unlearning_summary", "pareto_front", "parse_grid_text", "per_class_shift",
           "phase_matrix", "retain_metric", "run_counts", "run_sample_sizes", "sample_sizes", "seed_groups",
           "shown_csv", "spec_cells", "varied_params", "wilson_interval"]
