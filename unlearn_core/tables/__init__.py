"""Comparison tables and judgement rules on plain pandas frames (no UI): the Results table of runs
(:mod:`.runs`), a sweep's cells (:mod:`.grids`) and uncertainty over seeds (:mod:`.seeds`).

The dashboard draws these frames; a script or a report export can build the same ones.
"""

from unlearn_core.tables.grids import (COLOUR_BY, MAX_GRID_VALUES, categorical_axis, cell_frame, cell_label,
                                       failure_rows, forget_metric, grid_values, gridable,
                                       parse_grid_text, pareto_front, phase_matrix, retain_metric, run_counts,
                                       spec_cells, varied_params)
from unlearn_core.tables.runs import (DECIMALS, DISPLAY, FORGOT_FLOOR, FORGOT_SHARE, GAP_COLUMNS, HELP, METRIC_COLUMNS,
                                      NOT_CANDIDATES, REFERENCE_METHODS, SPEED_COLUMN, WIDTHS, as_report, best_cells,
                                      display_frame, forgot, judged_table, metrics_table, over_unlearning_summary,
                                      per_class_shift, shown_csv)
from unlearn_core.tables.seeds import ensemble_band, interval_text, seed_groups

__all__ = ["categorical_axis", "failure_rows", "parse_grid_text", "run_counts", "COLOUR_BY", "DECIMALS", "DISPLAY",
           "FORGOT_FLOOR", "FORGOT_SHARE", "GAP_COLUMNS", "HELP", "MAX_GRID_VALUES",
           "METRIC_COLUMNS", "NOT_CANDIDATES",
           "REFERENCE_METHODS", "SPEED_COLUMN", "WIDTHS", "as_report", "best_cells", "cell_frame",
           "cell_label", "display_frame", "ensemble_band", "forget_metric", "forgot", "grid_values", "gridable",
           "interval_text", "judged_table", "metrics_table", "over_unlearning_summary", "pareto_front",
           "per_class_shift", "phase_matrix", "retain_metric", "seed_groups", "shown_csv", "spec_cells",
           "varied_params"]
