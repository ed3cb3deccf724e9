"""The comparison a paper would print: every method against the retrained model, over seeds.

:func:`run_bench` is a sweep (:mod:`unlearn_core.sweeps`) of every requested
method at its defaults, once per forget setting and seed, with one retrained
model per seed as the reference row; every run is a recorded run of the run
store, linked to the bench's tag, and rows aggregate mean and standard
deviation per method. ``COLUMNS`` is the one definition of the table's columns.
:func:`markdown_table` renders one setting as the table in ``docs/RESULTS.md``.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

from unlearn_core.errors import ParameterError
from unlearn_core.sweeps import summarize

COLUMNS = (("Acc_f", "Acc_f"), ("Acc_r", "Acc_r"), ("FA", "FA"), ("RA", "RA"), ("TA", "TA"),
           ("TA_retain", "TA_r"), ("MIA_svc", "MIA-SVC"), ("MIA_entropy", "MIA-ent"), ("avg_gap", "Avg.Gap"),
           ("seconds", "Time (s)"), ("rte", "Speed-up (x)"))
REFERENCE_ROWS = ("retrain", "original")


@dataclass(frozen=True)
class Preset:
    """A named paper-like setting: data set, model and training recipe overrides."""

    dataset: str
    model: str
    recipe: dict
    description: str


PRESETS = {
    # SalUn / l1-sparse train ResNet-18 on CIFAR-10 for 182 epochs (SGD, lr 0.1, batch 256); UNSC and NatMU use
    # comparable budgets. Needs a GPU and the CIFAR-10 download.
    "cifar10-resnet18": Preset("cifar10", "resnet18", {"epochs": 182, "batch_size": 256, "lr": 0.1,
                                                       "momentum": 0.9, "weight_decay": 5e-4, "augment": True},
                               "CIFAR-10, ResNet-18, 182 epochs SGD lr 0.1 batch 256 (SalUn's recipe)"),
}


@dataclass
class MethodRow:
    """One method's results over seeds in one forget setting."""

    method: str
    title: str
    values: dict = field(default_factory=lambda: {key: [] for key, _ in COLUMNS})
    run_ids: list = field(default_factory=list)
    errors: list = field(default_factory=list)
    in_scope: bool = True
    scope_reason: str = ""
    rte_not_comparable: list = field(default_factory=list)
    evidence: dict = field(default_factory=dict)  # ev_* numbers over seeds (runs made with --evidence)

    def add(self, metrics: dict, report: dict | None = None) -> None:
        for key, _ in COLUMNS:
            value = metrics.get(key)
            self.values[key].append(float("nan") if value is None else float(value))
        for key, value in metrics.items():
            if key.startswith("ev_") and value is not None:
                self.evidence.setdefault(key, []).append(float(value))
        if report is not None:
            if report.get("in_scope") is False:
                self.in_scope, self.scope_reason = False, report.get("in_scope_reason") or ""
            if report.get("rte_comparable") is False:
                self.rte_not_comparable.append(report.get("rte_not_comparable_reason") or "")

    def mean_std(self, key: str) -> tuple[float, float]:
        """Mean and sample standard deviation over seeds (:func:`unlearn_core.sweeps.summarize`); NaN without
        values, a standard deviation of 0 for one value."""
        stats = summarize(self.values[key])
        if stats["n"] == 0:
            return float("nan"), float("nan")
        return stats["mean"], stats["std"] if stats["std"] is not None else 0.0

    def as_dict(self) -> dict:
        summary = {key: dict(zip(("mean", "std"), self.mean_std(key))) for key, _ in COLUMNS}
        return {"method": self.method, "title": self.title, "runs": len(self.values["TA"]), "run_ids": self.run_ids,
                "errors": self.errors, "values": self.values, "summary": summary, "in_scope": self.in_scope,
                "scope_reason": self.scope_reason, "rte_not_comparable": self.rte_not_comparable,
                "evidence": {key: summarize(values)["mean"] for key, values in self.evidence.items() if values}}


def bench_methods(requested: list[str] | None = None) -> list[str]:
    """The methods to compare, in registry order; ``retrain`` is a reference row, never a method row."""
    from unlearn_core.methods import get_method, method_names

    if requested:
        names = [get_method(name).name for name in requested]
        if len(set(names)) != len(names):
            raise ParameterError(f"--methods repeats a method: {', '.join(requested)}")
    else:
        names = method_names()
    return [name for name in names if name != "retrain"]


def _split_overrides(overrides: dict | None, methods: list[str]) -> dict[str, dict]:
    """``{"ga.lr": "1e-3"}`` -> ``{"ga": {"lr": "1e-3"}}``, checked against each method's parameters."""
    from unlearn_core.methods import get_method

    out: dict[str, dict] = {}
    for key, value in (overrides or {}).items():
        method, sep, name = key.partition(".")
        if not sep or not name:
            raise ParameterError(f"bench parameters look like METHOD.NAME=VALUE, got {key!r}")
        method = get_method(method).name
        if method not in methods:
            raise ParameterError(f"parameter {key!r} is for {method!r}, which this bench does not run")
        get_method(method).param(name).coerce(value)
        out.setdefault(method, {})[name] = value
    return out


def run_bench(dataset: str = "mnist5k", forgets: list[str] = ("class:3", "random:0.1"), seeds: list[int] = (0,),
              methods: list[str] | None = None, model: str | None = None, device=None,
              recipe_overrides: dict | None = None, params: dict | None = None, store=None, tag: str | None = None,
              log=None, cancel=None, threads: int | None = None, engine: str = "inline",
              address: str | None = None, num_cpus: int | None = None, progress=None, evidence=None) -> dict:
    """Run the comparison as a sweep; returns a JSON-able dict with one entry per forget setting.

    A bench is a sweep (:mod:`unlearn_core.sweeps`) of every method at its
    defaults (``params`` maps ``"method.name"`` to a value to change one), with
    a reference ensemble of one retrained model per seed: the ``retrain`` row.
    A method that fails (e.g. diverges) on a seed is recorded as failed and
    listed in its row's errors; the bench goes on. Runs already in the store
    under the same key are reused, so an interrupted bench resumes.

    Every timing is made with torch pinned to ``threads`` threads (default:
    the count torch uses when the bench starts; on Ray, one per task), and a
    cached retrained model timed with another count or device is trained
    again, so the speed-up column divides like-for-like seconds. The engine is
    ``inline`` by default: one run at a time, as in docs/RESULTS.md.
    ``evidence`` (e.g. ``"probe,relearn"``) adds the evidence of forgetting to
    every method run and an evidence table to the markdown report.
    """
    import torch

    threads = _check_threads(threads) if engine == "inline" or threads is not None else 1
    previous_threads = torch.get_num_threads()
    if engine == "inline":
        torch.set_num_threads(threads)
    try:
        return _run_bench(dataset, forgets, seeds, methods, model, device, recipe_overrides, params, store, tag, log,
                          cancel, threads, engine, address, num_cpus, progress, evidence)
    finally:
        torch.set_num_threads(previous_threads)


def _check_threads(threads: int | None) -> int:
    import torch

    from unlearn_core.sweeps import EngineConfig

    if threads is None:
        return torch.get_num_threads()
    return EngineConfig.checked("inline", threads=threads).threads


def _run_bench(dataset, forgets, seeds, methods, model, device, recipe_overrides, params, store, tag, log, cancel,
               threads, engine, address, num_cpus, progress, evidence=None) -> dict:
    from unlearn_core.sweeps import SweepSpec, new_tag, run_sweep

    methods = bench_methods(methods)
    per_method = _split_overrides(params, methods)
    grid = {method: {name: [value] for name, value in values.items()} for method, values in per_method.items()}
    spec = SweepSpec(dataset=dataset, model=model, forgets=[str(f) for f in forgets], methods=methods, grid=grid,
                     seeds=list(seeds), retrains=len(seeds), recipe_overrides=recipe_overrides,
                     tag=tag or new_tag("bench"), evidence=evidence)
    started = time.perf_counter()
    swept = run_sweep(spec, engine=engine, address=address, num_cpus=num_cpus, device=device, store=store,
                      progress=progress, cancel=cancel, log=log, kind="bench", threads=threads)
    result = bench_result(swept)
    result.update({"params": per_method, "total_seconds": time.perf_counter() - started, "threads": threads,
                   "ran": swept["ran"], "skipped": swept["skipped"], "engine": engine})
    return result


def bench_result(swept: dict) -> dict:
    """A sweep result as the bench's per-setting rows (retrain, original, then one row per method)."""
    from unlearn_core.methods import get_method
    from unlearn_core.metrics import avg_gap

    methods = [m for m in swept["spec"].get("methods", []) if m != "retrain"]
    settings = []
    for entry in swept["forgets"]:
        rows = {"retrain": MethodRow("retrain", get_method("retrain").title),
                "original": MethodRow("original", "Original (before unlearning)")}
        rows.update({m: MethodRow(m, get_method(m).title) for m in methods})
        references = {run["seed"]: run for run in
                      sorted(_reference_runs(swept, entry["forget"]), key=lambda run: run["seed"])}
        for seed, run in references.items():
            _add_run(rows["retrain"], run)
        for seed, original in sorted(entry["per_seed"]["original"].items()):
            # Reports carry the original's own gap, on the same terms as the methods' (class-wise keys).
            gap = original.get("avg_gap")
            retrained = entry["per_seed"]["reference"].get(seed)
            if gap is None and retrained:
                gap = avg_gap(original, retrained)
            rows["original"].add({**original, "avg_gap": gap, "seconds": None, "rte": None})
        for cell in swept["cells"]:
            if cell["forget"] == entry["forget"] and cell["method"] in rows and cell["method"] != "retrain":
                for run in cell["runs"]:
                    _add_run(rows[cell["method"]], run)
        settings.append({"forget": entry["forget"], "model": swept["model"],
                         "rows": [rows[name].as_dict() for name in ("retrain", "original", *methods)]})
    return {"dataset": swept["dataset"], "model": swept["model"], "device": swept.get("device"),
            "seeds": list(swept.get("seeds") or []), "recipe": swept["spec"].get("recipe"), "tag": swept["tag"],
            "settings": settings}


def _reference_runs(swept: dict, forget: str) -> list[dict]:
    entry = next(e for e in swept["forgets"] if e["forget"] == forget)
    done = [{"run_id": run_id, "seed": seed, "status": "done", "metrics": entry["per_seed"]["reference"][seed]}
            for run_id, seed in zip(entry["reference"]["run_ids"], entry["reference"]["seeds"])]
    return done + list(entry["reference"]["failed"])


def _add_run(row: MethodRow, run: dict) -> None:
    if run["status"] != "done":
        row.errors.append(f"seed {run['seed']}: {run['error']}")
        return
    row.add(run["metrics"], run.get("flags"))
    row.run_ids.append(run["run_id"])


def result_from_store(store, tag: str) -> dict:
    """Rebuild a bench result from the runs recorded under ``tag`` (e.g. to re-render an interrupted bench).

    Only finished runs count; the original model's row comes from the reports' ``original`` section.
    """
    from unlearn_core.methods import get_method
    from unlearn_core.metrics import AVG_GAP_KEYS, avg_gap

    if store.get_sweep(tag) is not None:
        from unlearn_core.sweeps import sweep_result

        return bench_result(sweep_result(store, tag))
    # Benches recorded before benches were sweeps: rebuild from the runs' tags.
    runs = [r for r in reversed(store.list(tag=tag)) if r["status"] == "done" and r["report"]]
    if not runs:
        raise ParameterError(f"no finished runs are recorded with tag {tag!r}")
    settings, order = {}, []
    for run in runs:
        forget = run["forget"]
        if forget not in settings:
            order.append(forget)
            settings[forget] = {"model": run["model"], "seeds": set(),
                                "rows": {"retrain": MethodRow("retrain", get_method("retrain").title),
                                         "original": MethodRow("original", "Original (before unlearning)")}}
        setting = settings[forget]
        report = run["report"]
        if run["seed"] not in setting["seeds"] and report.get("retrained"):
            setting["seeds"].add(run["seed"])
            keys = report.get("avg_gap_keys") or AVG_GAP_KEYS
            setting["rows"]["original"].add({**report["original"],
                                             "avg_gap": avg_gap(report["original"], report["retrained"], keys),
                                             "seconds": None, "rte": None})
        method = run["method"]
        if method not in setting["rows"]:
            setting["rows"][method] = MethodRow(method, get_method(method).title)
        setting["rows"][method].add({**report["unlearned"], "avg_gap": report.get("avg_gap"),
                                     "seconds": report["seconds"], "rte": report.get("rte")}, report)
        setting["rows"][method].run_ids.append(run["id"])
    for run in store.list(tag=tag, status="failed"):
        rows = settings.get(run["forget"], {}).get("rows", {})
        if run["method"] in rows:
            rows[run["method"]].errors.append(f"seed {run['seed']}: {run['error']}")
    first = runs[0]
    seeds = sorted({r["seed"] for r in runs})
    return {"dataset": first["dataset"], "model": first["model"], "device": first["device"], "seeds": seeds,
            "tag": tag, "settings": [{"forget": f, "model": settings[f]["model"],
                                      "rows": [row.as_dict() for row in settings[f]["rows"].values()]}
                                     for f in order]}


def _cell(summary: dict, key: str, runs: int) -> str:
    mean, std = summary[key]["mean"], summary[key]["std"]
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "–"
    digits = 1 if key in ("seconds", "rte") and mean >= 10 else 2
    return f"{mean:.{digits}f}" if runs <= 1 else f"{mean:.{digits}f} ± {std:.{digits}f}"


def best_avg_gap_methods(setting: dict) -> set[str]:
    """The method rows whose mean Avg. Gap is the smallest (all of them on a tie).

    Only in-scope method rows with at least one run compete, and nothing is
    best when fewer than two of them do.
    """
    candidates = {}
    for row in setting["rows"]:
        mean = row["summary"]["avg_gap"]["mean"]
        if row["method"] in REFERENCE_ROWS or not row.get("in_scope", True) or row["runs"] == 0:
            continue
        if mean is None or (isinstance(mean, float) and math.isnan(mean)):
            continue
        candidates[row["method"]] = round(float(mean), 2)
    if len(candidates) < 2:
        return set()
    best = min(candidates.values())
    return {method for method, value in candidates.items() if value == best}


def markdown_table(setting: dict) -> str:
    """One forget setting as a markdown table (mean ± std over seeds).

    Rows of methods outside their declared scope are marked with a dagger and
    never bolded as best; a speed-up whose two times were taken under other
    conditions reads "n/c" (not comparable).
    """
    header = "| Method | " + " | ".join(label for _, label in COLUMNS) + " |"
    lines = [header, "|" + "---|" * (len(COLUMNS) + 1)]
    best = best_avg_gap_methods(setting)
    gap_at = [key for key, _ in COLUMNS].index("avg_gap")
    for row in setting["rows"]:
        cells = [_cell(row["summary"], key, row["runs"]) for key, _ in COLUMNS]
        if row["method"] == "original":
            cells[-2] = cells[-1] = "–"
        elif row.get("rte_not_comparable") and cells[-1] == "–":
            cells[-1] = "n/c"
        if row["method"] in best:
            cells[gap_at] = f"**{cells[gap_at]}**"
        name = row["title"] if row["method"] in REFERENCE_ROWS else f"{row['title']} (`{row['method']}`)"
        if not row.get("in_scope", True):
            name += " † out of scope"
        if row["errors"]:
            name += f" [{len(row['errors'])} failed]"
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


EVIDENCE_COLUMNS = (("ev_probe_forget", "probe_f after"), ("ev_probe_forget_retrained", "probe_f retrained"),
                    ("ev_knn_forget", "kNN_f after"), ("ev_relearn_steps", "relearn after"),
                    ("ev_relearn_steps_original", "relearn original"),
                    ("ev_relearn_steps_retrained", "relearn retrained"))


def evidence_table(setting: dict) -> str | None:
    """The evidence of forgetting per method row (means over seeds), or None when no run carries any.

    probe_f = linear-probe accuracy on the forget set's held-out samples from
    the frozen features; relearn = steps to bring the forget accuracy half way
    back (docs/EVIDENCE.md). A method whose unlearned model relearns in far
    fewer steps than the retrained one only hid the data.
    """
    rows = [row for row in setting["rows"] if row.get("evidence")]
    if not rows:
        return None
    lines = ["| Method | " + " | ".join(label for _, label in EVIDENCE_COLUMNS) + " |",
             "|" + "---|" * (len(EVIDENCE_COLUMNS) + 1)]
    for row in rows:
        cells = []
        for key, _ in EVIDENCE_COLUMNS:
            value = row["evidence"].get(key)
            cells.append("–" if value is None else (f"{value:.1f}" if "relearn" in key else f"{value:.2f}"))
        lines.append(f"| {row['title']} (`{row['method']}`) | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def markdown_report(result: dict, command: str | None = None) -> str:
    """Every setting's table with a one-line heading each."""
    seeds = ",".join(map(str, result["seeds"]))
    parts = []
    if command:
        parts.append(f"Command: `{command}`\n")
    for setting in result["settings"]:
        threads = f", {result['threads']} torch thread(s)" if result.get("threads") else ""
        parts.append(f"### {result['dataset']} / {setting['model']}, forget `{setting['forget']}` "
                     f"(seeds {seeds}, device {result['device']}{threads})\n")
        parts.append(markdown_table(setting) + "\n")
        scope = [f"- † `{row['method']}`: {row['scope_reason']}" for row in setting["rows"]
                 if not row.get("in_scope", True)]
        if scope:
            parts.append("\n".join(scope) + "\n")
        not_comparable = sorted({reason for row in setting["rows"] for reason in row.get("rte_not_comparable", [])})
        if not_comparable:
            parts.append("Speed-up n/c (times not comparable): " + "; ".join(not_comparable) + "\n")
        evidence = evidence_table(setting)
        if evidence:
            parts.append("Evidence of forgetting (means over seeds; docs/EVIDENCE.md):\n\n" + evidence + "\n")
        errors = [f"- {row['method']}: {e}" for row in setting["rows"] for e in row["errors"]]
        if errors:
            parts.append("Failed runs:\n" + "\n".join(errors) + "\n")
    return "\n".join(parts)


def flat_rows(result: dict) -> list[dict]:
    rows = []
    for setting in result["settings"]:
        for row in setting["rows"]:
            flat = {"dataset": result["dataset"], "model": setting["model"], "forget": setting["forget"],
                    "method": row["method"], "runs": row["runs"], "failed": len(row["errors"])}
            for key, _ in COLUMNS:
                flat[f"{key}_mean"] = row["summary"][key]["mean"]
                flat[f"{key}_std"] = row["summary"][key]["std"]
            rows.append(flat)
    return rows
