"""The Results table of runs and its judgement rules, on plain pandas frames: which cells are best, which runs
forgot, which retained classes a run damaged, and how every column is named and explained.

- :func:`metrics_table`: one row per reference model and per finished run, with every headline metric, its
  absolute gap to the retrained model, the Avg. Gap, seconds and RTE; :func:`judged_table` adds scope and
  whether each run forgot;
- :func:`per_class_shift`: per-class test accuracy of every run minus the original's;
- the best-cell rule (:func:`best_cells`): a cell is "best" only when at least two runs compete, and every
  run tied with the best value (as displayed, two decimals) is best with it; when all competitors tie, none is;
  runs outside their method's scope (``report["in_scope"] is False``) never compete, nor does the original or
  the retrained reference, nor a ``retrain`` run (a sweep's reference model: the reference itself, labelled
  ``#id retrain (reference)``); given the number of samples behind each column (:func:`run_sample_sizes`), a
  run is best only when some competitor is worse by more than sampling noise allows: the half-width of the 95 %
  Wilson interval of an accuracy on that many samples at the best run's value (:mod:`.noise`), and every run
  within that margin of the best is best with it; the speed-up award goes only to runs that forgot
  (:func:`forgot`, within the same noise margin of the retrained model's FA) and whose speed-up was timed like for
  like (``report["rte_comparable"]`` not false);
- the over-unlearning rule (:func:`over_unlearning_summary`): a retained class is damaged when a run's test
  accuracy on it is more than ``threshold`` points below the retrained model's and the loss is at least
  ``min_images`` test images.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from unlearn_core.metrics import AVG_GAP_KEYS, HEADLINE_METRICS, avg_gap
from unlearn_core.report import ModelMetrics, Report
from unlearn_core.tables.noise import binomial_margin, sample_sizes, tied_with_best

METRIC_COLUMNS = HEADLINE_METRICS
# Every metric is judged by its distance to the retrained reference (the gold standard of unlearning).
GAP_COLUMNS = tuple(f"gap_{m}" for m in METRIC_COLUMNS)
REFERENCE_METHODS = ("original", "retrained")
# A run of this method is the retrained reference itself (a sweep's reference ensemble): shown, never a candidate.
REFERENCE_RUN_METHOD = "retrain"
NOT_CANDIDATES = (*REFERENCE_METHODS, REFERENCE_RUN_METHOD)
SPEED_COLUMN = "speed-up vs retrain (x)"
DECIMALS = 2  # what the table shows; ties are decided on the shown values
# A run forgot when it closed at least this share of the original's distance to the retrained model on FA
# (and on Acc_f where the forget set has classes), or came within FORGOT_FLOOR points of it.
FORGOT_SHARE = 0.75
FORGOT_FLOOR = 1.0

# Display names carry what is good: "→ retrained" where the target is the retrained model's value (closeness is
# the rule, :data:`unlearn_core.metrics.METRIC_INFO`), an arrow only where lower or higher is better; the tooltips
# say what each column measures.
# Short enough that the whole table fits beside the sidebar in a 1500 px window (measured in Chromium).
DISPLAY = {
    "FA": "FA", "RA": "RA", "TA": "TA", "Acc_f": "Acc_f", "Acc_r": "Acc_r",
    "MIA_svc": "MIA-SVC → retrained", "MIA_entropy": "MIA-ent. → retrained",
    "avg_gap": "Avg. Gap ↓", "seconds": "time (s)", "rte": SPEED_COLUMN, "scope": "scope",
    **{f"gap_{m}": f"|Δ {m}|" for m in METRIC_COLUMNS},
}
DISPLAY["gap_MIA_svc"] = "|Δ MIA-SVC|"
DISPLAY["gap_MIA_entropy"] = "|Δ MIA-entropy|"

# Pixel widths per column, chosen so the headers are not cut (Streamlit does not wrap them).
WIDTHS = {"run": 135, "scope": 100, "FA": 62, "RA": 62, "TA": 62, "Acc_f": 66, "Acc_r": 66, "MIA_svc": 132,
          "MIA_entropy": 128, "avg_gap": 84, "seconds": 72, "rte": 160, **{f"gap_{m}": 100 for m in METRIC_COLUMNS}}

HELP = {
    "FA": "Forget accuracy (%): accuracy on the forget samples. Good = close to the retrained model's value.",
    "RA": "Remaining accuracy (%): accuracy on the training samples kept. Good = close to the retrained model's.",
    "TA": "Test accuracy (%) on the whole test set. Good = close to the retrained model's.",
    "Acc_f": "Test accuracy (%) on the forgotten classes (class forgetting only; – otherwise). Good = close to the "
             "retrained model's, which never saw them.",
    "Acc_r": "Test accuracy (%) on the remaining classes. Good = close to the retrained model's.",
    "MIA_svc": "Confidence-based SVC membership attack (SalUn): % of forget samples it calls NON-members, mean "
               "over 10 seeded draws of members. Higher = more forgotten; compare with the retrained model's value.",
    "MIA_entropy": "Entropy membership attack (NatMU, SSD; the whole test set as non-members): % of forget samples "
                   "it calls MEMBERS. Lower = more forgotten; the target is the retrained model's value.",
    "avg_gap": "Average absolute gap to the retrained model over the headline metrics. Lower = closer to "
               "retraining (0 for the reference itself).",
    "seconds": "Wall-clock seconds of the unlearning method (for the reference: its training time).",
    "rte": "Retraining time over the method's time: how many times faster than retraining. – when the two were "
           "not timed under the same conditions. Awarded only to runs that forgot.",
    "scope": "Whether the method was designed for this kind of forget set; out-of-scope runs are shown but never "
             "highlighted as best.",
    **{f"gap_{m}": f"Absolute difference to the retrained model's {m}. Lower = closer to retraining."
       for m in METRIC_COLUMNS},
}


def as_report(report) -> Report:
    """A run's report as a :class:`Report`: a stored JSON dict is read with :meth:`Report.from_dict`."""
    return report if isinstance(report, Report) else Report.from_dict(report)


def _finished(runs: list[dict]) -> list[tuple[dict, Report]]:
    """The finished runs that carry a report, each with its typed report, in the given order (newest first)."""
    return [(run, as_report(run["report"])) for run in runs if run.get("status") == "done" and run.get("report")]


def _value(metrics: ModelMetrics | None, key: str):
    value = metrics.get(key) if metrics is not None else None
    return float("nan") if value is None else float(value)


def metrics_table(runs: list[dict]) -> pd.DataFrame:
    """One row for the original, one for the retrained reference, one per finished run.

    Columns: the metrics, their absolute gaps to the retrained model, the
    average gap, seconds and RTE. The reference rows come from the newest run.
    """
    done = _finished(runs)
    rows = []
    if done:
        newest = done[0][1]
        for label, which in (("original", "original"), ("retrain (reference)", "retrained")):
            metrics = newest.model_metrics(which)
            if metrics is None:
                continue
            row = {"run": label, "method": which, **{k: _value(metrics, k) for k in METRIC_COLUMNS}}
            row["seconds"] = newest.retrain_seconds if which == "retrained" else float("nan")
            if newest.retrained is not None:
                # The original's distance from retraining is what unlearning has to close; the reference's is 0.
                row["avg_gap"] = avg_gap(metrics.to_dict(), newest.retrained.to_dict(),
                                         newest.avg_gap_keys or AVG_GAP_KEYS)
            rows.append(row)
    for run, report in done:
        label = f"#{run['id']} {run['method']}"
        if run["method"] == REFERENCE_RUN_METHOD:
            label += " (reference)"
        row = {"run": label, "method": run["method"],
               **{k: _value(report.unlearned, k) for k in METRIC_COLUMNS},
               "seconds": report.seconds, "rte": report.rte, "avg_gap": report.avg_gap, "run_id": run["id"]}
        rows.append(row)
    table = pd.DataFrame(rows)
    if table.empty:
        return table
    reference = table[table["method"] == "retrained"]
    for key in METRIC_COLUMNS:
        table[f"gap_{key}"] = (table[key] - float(reference[key].iloc[0])).abs() if len(reference) else float("nan")
    for column in ("rte", "avg_gap", "run_id", "seconds"):
        table[column] = pd.to_numeric(table[column], errors="coerce") if column in table else float("nan")
    return table


def per_class_shift(runs: list[dict]) -> tuple[pd.DataFrame, list[str], tuple[int, ...]]:
    """Per-class test accuracy of every run minus the original's: rows run label, columns class names.

    Returns ``(shift, class_names, forgotten_classes)``; the retrained
    reference is the first row, so a method can be compared with it.
    """
    done = _finished(runs)
    if not done:
        return pd.DataFrame(), [], ()
    report = done[0][1]
    names = [str(n) for n in report.class_names or range(len(report.original.per_class_test))]
    original = np.asarray(report.original.per_class_test, dtype=float)
    rows, labels = [], []
    if report.retrained is not None:
        rows.append(np.asarray(report.retrained.per_class_test, dtype=float) - original)
        labels.append("retrain (reference)")
    for run, run_report in done:
        rows.append(np.asarray(run_report.unlearned.per_class_test, dtype=float) - original)
        labels.append(f"#{run['id']} {run['method']}")
    shift = pd.DataFrame(np.vstack(rows), index=labels, columns=names)
    return shift, names, tuple(report.forgotten_classes or ())


def _finite(value) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return float("nan")
    return number if math.isfinite(number) else float("nan")


def forgot(run_metrics: ModelMetrics | dict | None, original: ModelMetrics | dict | None,
           retrained: ModelMetrics | dict | None, sizes: dict | None = None) -> bool:
    """Whether a run's FA (and Acc_f, when defined) came near the retrained model's.

    "Near": within :data:`FORGOT_FLOOR` points, or at least
    :data:`FORGOT_SHARE` of the original's distance to the retrained model
    closed, or, given ``sizes`` (samples per metric, :func:`run_sample_sizes`), within the 95 % Wilson
    margin of the retrained model's value on that many samples. A run that forgot nothing sits at the
    original's distance.
    """
    judged = False
    for key in ("FA", "Acc_f"):
        value, target, start = (_finite((m or {}).get(key)) for m in (run_metrics, retrained, original))
        if math.isnan(value) or math.isnan(target):
            continue
        judged = True
        allowed = FORGOT_FLOOR
        if not math.isnan(start):
            allowed = max(allowed, (1 - FORGOT_SHARE) * abs(start - target))
        if sizes and sizes.get(key):
            allowed = max(allowed, binomial_margin(target, sizes[key]))
        if abs(value - target) > allowed:
            return False
    return judged


def run_sample_sizes(runs: list[dict], test_counts=None) -> dict[str, int]:
    """Samples behind each metric column for the newest finished run's setting (:func:`.noise.sample_sizes`):
    its forget and retained counts and, given ``test_counts`` (test images per class), the test pools."""
    done = _finished(runs)
    if not done:
        return {}
    report = done[0][1]
    return sample_sizes(report.n_forget, report.n_retain, test_counts, report.forgotten_classes)


def judged_table(runs: list[dict], sizes: dict | None = None) -> pd.DataFrame:
    """:func:`metrics_table` plus ``scope`` (text), ``in_scope``, ``forgot`` and ``rte`` blanked when not
    comparable. One row per reference and per finished run, in the same order. ``sizes``: samples per metric
    (:func:`run_sample_sizes`) for :func:`forgot`'s noise margin."""
    table = metrics_table(runs)
    if table.empty:
        return table
    reports = {run["id"]: report for run, report in _finished(runs)}
    newest = next(iter(reports.values()))
    in_scope, scope, did_forget = [], [], []
    rte = table["rte"].to_numpy(dtype=float).copy()
    for i, row in enumerate(table.itertuples(index=False)):
        if row.method in NOT_CANDIDATES:
            in_scope.append(True)
            scope.append("reference")
            did_forget.append(row.method != "original")
            continue
        report = reports[int(row.run_id)]
        inside = report.in_scope is not False
        in_scope.append(inside)
        scope.append("✓" if inside else "⚠ out of scope")
        did_forget.append(forgot(report.unlearned, newest.original, newest.retrained, sizes))
        if report.rte_comparable is False:
            rte[i] = float("nan")  # timed under other conditions than the reference: no honest ratio
    table = table.assign(in_scope=in_scope, scope=scope, forgot=did_forget, rte=rte)
    return table


def best_cells(table: pd.DataFrame, sizes: dict | None = None,
               avg_gap_keys=AVG_GAP_KEYS) -> dict[str, set[str]]:
    """Per column, the labels of every run that is best in it (see the module's rules); absent = no highlight.

    Metric columns are judged by their gap to the retrained model, so
    ``best["FA"] == best["gap_FA"]``. ``sizes`` (samples per metric, :func:`run_sample_sizes`) turns on the
    noise rule: a gap must beat another run's by more than :func:`.noise.binomial_margin` at the best run's
    value; the Avg. Gap's margin is the mean of the margins of ``avg_gap_keys`` (``TA_retain`` read from
    ``Acc_r``). Without ``sizes`` only the shown two decimals decide.
    """
    competing = table[~table["method"].isin(NOT_CANDIDATES)]
    if "in_scope" in competing:
        competing = competing[competing["in_scope"].astype(bool)]
    best: dict[str, set[str]] = {}
    if len(competing) < 2:
        return best

    def winners(values: pd.Series, margin: float = 0.0) -> set[str] | None:
        tied = tied_with_best(pd.to_numeric(values, errors="coerce").round(DECIMALS), margin)
        return None if tied is None else set(competing.loc[tied.index, "run"])

    def margin_of(metric: str, gaps: pd.Series) -> float:
        """The binomial margin of ``metric`` at the value of the run with the smallest gap (0 when unknown)."""
        valid = pd.to_numeric(gaps, errors="coerce").dropna()
        if not sizes or not sizes.get(metric) or metric not in competing or valid.empty:
            return 0.0
        margin = binomial_margin(float(competing.loc[valid.idxmin(), metric]), sizes[metric])
        return margin if math.isfinite(margin) else 0.0

    margins = {}
    for metric in METRIC_COLUMNS:
        column = f"gap_{metric}"
        if column in competing:
            margins[metric] = margin_of(metric, competing[column])
            if won := winners(competing[column], margins[metric]):
                best[column] = best[metric] = won
    if "avg_gap" in competing:
        # TA over the remaining classes' test images (NatMU's class-wise key) is the Acc_r column.
        keys = ["Acc_r" if k == "TA_retain" else k for k in (avg_gap_keys or AVG_GAP_KEYS)]
        avg_margin = float(np.mean([margins.get(k, 0.0) for k in keys])) if sizes else 0.0
        if won := winners(competing["avg_gap"], avg_margin):
            best["avg_gap"] = won
    if "rte" in competing:
        # Speed-ups are compared only where at least two are known; the award then goes to the fastest run
        # among those that forgot (a run that forgot nothing is fast for free).
        known = pd.to_numeric(competing["rte"], errors="coerce").round(DECIMALS).dropna()
        if "forgot" in competing:
            eligible = known[competing.loc[known.index, "forgot"].astype(bool)]
        else:
            eligible = known
        if len(known) >= 2 and len(eligible) and not np.allclose(known, known.max()):
            best["rte"] = set(competing.loc[eligible.index[np.isclose(eligible, eligible.max())], "run"])
    return best


def over_unlearning_summary(shift: pd.DataFrame, forgotten: tuple[int, ...], test_counts,
                            threshold: float = 2.0, min_images: int = 3,
                            min_class_images: int = 20, reference_accuracy=None) -> tuple[list[str], list[str]]:
    """One line per run that damaged retained classes, listing every damaged class; plus the classes skipped.

    A retained class is damaged when the run's test accuracy on it is more
    than ``threshold`` points below the **retrained** model's (the change
    retraining itself brings is not the method's fault) and that loss is at
    least ``min_images`` test images. Classes with fewer than
    ``min_class_images`` test images are not judged (one image moves them by
    several points) and are returned as the second list. Given ``reference_accuracy`` (the retrained model's
    test accuracy per class, %), a loss must also exceed the half-width of the 95 % Wilson interval of that
    accuracy on the class's test images (:func:`.noise.binomial_margin`): one seed cannot tell less apart.
    """
    counts = np.asarray(test_counts, dtype=float)
    reference = "retrain (reference)"
    if shift.empty or reference not in shift.index:
        return [], []
    retained = [i for i in range(shift.shape[1]) if i not in set(forgotten)]
    skipped = [str(shift.columns[i]) for i in retained if counts[i] < min_class_images]
    judged = [i for i in retained if counts[i] >= min_class_images]
    baseline = shift.loc[reference].to_numpy(dtype=float)
    floor = np.full(len(counts), float(threshold))
    if reference_accuracy is not None:
        noise = [binomial_margin(a, int(c)) for a, c in zip(np.asarray(reference_accuracy, dtype=float), counts)]
        floor = np.maximum(floor, np.nan_to_num(np.asarray(noise, dtype=float), nan=0.0))
    lines = []
    for label, row in shift.iterrows():
        if label == reference:
            continue
        below = baseline - row.to_numpy(dtype=float)  # points below the retrained model, per class
        damaged = [i for i in judged if below[i] > floor[i] and below[i] * counts[i] / 100 >= min_images - 1e-9]
        if damaged:
            damaged.sort(key=lambda i: -below[i])
            classes = ", ".join(f"{shift.columns[i]} (−{below[i]:.1f} pts, {below[i] * counts[i] / 100:.0f} "
                                f"of {int(counts[i])} images)" for i in damaged)
            lines.append(f"{label}: {len(damaged)} retained class(es) below the retrained model: {classes}")
    return lines, skipped


def display_frame(table: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """The chosen columns, indexed by run label, renamed for display, numbers as text with two decimals.

    Text, because Streamlit draws a missing number as "None" whatever a
    styler or column format says; a value that does not apply shows "–".
    """
    frame = table[["run", *columns]].set_index("run")
    if "in_scope" in table:  # the badge: "⚠" before the label of a run outside its method's scope
        frame.index = [label if inside else f"⚠ {label}" for label, inside in zip(table["run"], table["in_scope"])]
        frame.index.name = "run"
    for column in columns:
        if column != "scope":
            values = pd.to_numeric(frame[column], errors="coerce")
            frame[column] = [f"{v:.{DECIMALS}f}" if math.isfinite(v) else "–" for v in values]
    return frame.rename(columns={c: DISPLAY.get(c, c) for c in columns})


def shown_csv(table: pd.DataFrame, columns: list[str]) -> bytes:
    """The table as the Results page shows it, as CSV: its run labels (with the ⚠ badge), display names and the
    shown two-decimal values ("–" where a value does not apply), not the run store's raw columns."""
    return display_frame(table, columns).to_csv(index=True).encode("utf-8")
