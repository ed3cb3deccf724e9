"""Plotly figures built from plain arrays, frames and report sections (no UI): the dashboard draws them, and a
script or a report export can build the same ones. Tests check the traces on the ``go.Figure`` objects.

Pages build their plotly figures here, never with plotly directly: importing this package completes pandas'
import (``runs`` imports it), and plotly reads pandas from ``sys.modules`` without importing it, so a page that
built a figure while the server's warm-up thread was still importing pandas failed on the half-initialised module.

One colour convention throughout (:mod:`.style`); one module per subject: runs against the references
(:mod:`.runs`), the embedding map (:mod:`.embeddings`), UNSC's subspaces (:mod:`.nullspace`), NatMU's masks
(:mod:`.hybrids`), a sweep's cells (:mod:`.sweeps`) and a run's evidence (:mod:`.evidence`).
"""

from unlearn_core.figures.embeddings import embedding_scatter, legend_html, prediction_hover, shared_ranges
from unlearn_core.figures.evidence import (EVIDENCE_COLOURS, EVIDENCE_MODELS, cka_layers, klom_histogram, probe_bars,
                                           relearn_curves, relearn_retain_curves, ulira_roc, unlearning_curves)
from unlearn_core.figures.hybrids import framed_mask
from unlearn_core.figures.nullspace import (normalised_spectrum_figure, rank_bars, spectrum_figure,
                                            subspace_overlap_bars, subspace_rank_bars)
from unlearn_core.figures.runs import (ENTROPY_FLOOR, confusion_change, confusion_difference, entropy_histograms,
                                       entropy_y_max, forget_counts_figure, per_class_bars, per_class_heatmap)
from unlearn_core.figures.style import (CHANGE_SCALE, CHANGE_STEPS, METHOD_COLOURS, PALETTE, change_limit,
                                        class_colour, method_colour)
from unlearn_core.figures.sweeps import (GAP_SCALE, label_colours, pareto_note, pareto_range, pareto_scatter,
                                        phase_map)

__all__ = ["CHANGE_SCALE", "CHANGE_STEPS", "ENTROPY_FLOOR", "EVIDENCE_COLOURS", "EVIDENCE_MODELS", "GAP_SCALE",
           "METHOD_COLOURS", "PALETTE", "change_limit", "cka_layers", "class_colour", "confusion_change",
           "confusion_difference", "embedding_scatter", "entropy_histograms", "entropy_y_max",
           "forget_counts_figure", "framed_mask", "klom_histogram", "label_colours", "legend_html", "method_colour",
           "normalised_spectrum_figure", "pareto_note", "pareto_range", "pareto_scatter", "per_class_bars",
           "per_class_heatmap", "phase_map", "prediction_hover", "probe_bars", "rank_bars", "relearn_curves",
           "relearn_retain_curves", "shared_ranges", "spectrum_figure", "subspace_overlap_bars",
           "subspace_rank_bars", "ulira_roc", "unlearning_curves"]
