"""One self-contained HTML report for a set of runs.

The page holds, in order: the setting, the metric table (mean and 95 %
interval over seeds), and per setting the per-class shifts, the aligned
embeddings, UNSC's spectrum, NatMU's hybrids and the evidence sections,
then the runs that did not finish and the recipe to reproduce everything.
Every section is present (with a line saying why it is empty when the runs
give it nothing), so a reader always finds the same headings.

Plotly is inlined once, with the first figure (``include_plotlyjs=True``),
and every later figure uses that copy; images are ``data:`` URIs. The page
loads nothing from the network. Each chart downloads as SVG or as PNG at 2x
(:mod:`unlearn_core.slides`) under a name that says what it shows.
"""

from __future__ import annotations

import html
import json
from datetime import datetime, timezone

from unlearn_core.handout import content
from unlearn_core.handout.recipe import (dataset_sha256, package_versions, run_command, sweep_command,
                                         weights_sha256)
from unlearn_core.handout.selection import Selection

#: Section ids, in page order (tests and links rely on them).
SECTIONS = ("setting", "metrics", "class-shifts", "embeddings", "spectrum", "hybrids", "evidence", "unfinished",
            "recipe")
MAX_EMBEDDED_RUNS = 6  # unlearned models drawn in one setting's map (one per group, lowest seed)
MAX_EVIDENCE_RUNS = 12  # runs whose evidence figures are drawn (one per group)
MAX_SETTINGS_WITH_MODELS = 4  # settings whose model-based figures (maps, spectra, hybrids) are computed

_STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px auto;max-width:1200px;color:#222;
padding:0 16px;line-height:1.45}
h1{font-size:1.6em;margin-bottom:0}h2{border-bottom:2px solid #4E79A7;padding-bottom:4px;margin-top:2em}
h3{margin-top:1.4em}table{border-collapse:collapse;font-size:0.9em;margin:8px 0}
th,td{border:1px solid #ddd;padding:4px 8px;text-align:right;vertical-align:top}
th:first-child,td:first-child,td.text,th.text{text-align:left}th{background:#f3f5f8}
table.metrics td{white-space:nowrap}tr.reference td{background:#fafafa;color:#555}
tr.out td{color:#999}.note{color:#666;font-size:0.9em}code,pre{background:#f6f8fa;border-radius:4px}
pre{padding:8px;white-space:pre-wrap;word-break:break-all;font-size:0.85em}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(360px,1fr));gap:8px}
.fig{margin:6px 0}.dl{font-size:0.8em;margin:0 0 6px 0}.dl button{margin-right:4px;cursor:pointer}
.gallery td{text-align:center;font-size:0.8em}.gallery img{image-rendering:pixelated;border:1px solid #ccc}
"""


class _Page:
    """The figures and HTML fragments of one report; plotly's script goes in with the first figure only."""

    def __init__(self):
        self.parts: list[str] = []
        self.figures = 0

    def add(self, text: str) -> None:
        self.parts.append(text)

    def figure(self, fig, filename: str) -> None:
        from unlearn_core.slides import download_config

        self.figures += 1
        div_id = f"figure-{self.figures}"
        body = fig.to_html(full_html=False, include_plotlyjs=self.figures == 1, div_id=div_id,
                           config=download_config(filename, "png"), default_width="100%")
        safe = html.escape(json.dumps(filename))
        buttons = "".join(
            f'<button type="button" onclick="Plotly.downloadImage(document.getElementById(\'{div_id}\'),'
            f'{{format:\'{fmt}\',filename:{safe},scale:{scale}}})">{label}</button>'
            for fmt, scale, label in (("svg", 1, "SVG"), ("png", 2, "PNG 2x")))
        self.add(f'<div class="fig" data-figure="{html.escape(filename)}">{body}'
                 f'<div class="dl">download {buttons} <code>{html.escape(filename)}</code></div></div>')


def _esc(value) -> str:
    return html.escape(str(value))


def _stat(stats: dict | None, decimals: int = 2) -> str:
    if not stats or stats.get("mean") is None:
        return "–"
    text = f"{stats['mean']:.{decimals}f}"
    if stats.get("ci_high") is not None:
        text += f" ± {stats['ci_high'] - stats['mean']:.{decimals}f}"
    return text


def _header(column: str) -> str:
    from unlearn_core.metrics import METRIC_INFO

    info = METRIC_INFO.get(column)
    if info is None:
        return _esc(column)
    target = {"retrained": " → retrained", "lower": " ↓", "higher": " ↑"}.get(info.better, "")
    return f'<span title="{_esc(info.label)} ({_esc(info.unit)}; {_esc(info.source)})">{_esc(column)}{target}</span>'


def _metric_table(rows: list[dict]) -> str:
    head = "<tr><th>model</th><th>n</th><th>seeds</th>" + "".join(
        f"<th>{_header(c)}</th>" for c in content.COLUMNS) + "<th>runs</th></tr>"
    body = []
    for row in rows:
        css = "reference" if row["kind"] != "run" else ("" if row["in_scope"] else "out")
        label = _esc(row["label"]) + ("" if row["in_scope"] else " ⚠ out of scope")
        cells = "".join(f"<td>{_stat(row['stats'].get(c))}</td>" for c in content.COLUMNS)
        body.append(f'<tr class="{css}"><td>{label}</td><td>{row["n"]}</td>'
                    f'<td>{_esc(",".join(map(str, row["seeds"])))}</td>{cells}'
                    f'<td>{_esc(", ".join(f"#{i}" for i in row["run_ids"]))}</td></tr>')
    return f"<table class=\"metrics\">{head}{''.join(body)}</table>"


def _setting_section(selection: Selection, settings: dict) -> str:
    runs = selection.done
    seeds = sorted({int(r.get("seed") or 0) for r in runs})
    lines = [f"<li>runs: {len(runs)} finished" + (f", {len(selection.unfinished)} not finished"
                                                  if selection.unfinished else "") + "</li>",
             f"<li>seeds: {_esc(', '.join(map(str, seeds)))}</li>",
             f"<li>device: {_esc(', '.join(sorted({str(r.get('device')) for r in runs})))}</li>"]
    items = []
    for (dataset, model, forget), members in settings.items():
        report = members[0]["report"]
        names = report.get("class_names") or []
        forgotten = ", ".join(str(names[c]) if c < len(names) else str(c)
                              for c in report.get("forgotten_classes") or []) or "–"
        items.append(f"<tr><td>{_esc(dataset)}</td><td>{_esc(model)}</td><td><code>{_esc(forget)}</code></td>"
                     f"<td>{report.get('n_forget')}</td><td>{report.get('n_retain')}</td>"
                     f"<td>{_esc(forgotten)}</td>"
                     f"<td>{_esc(', '.join(sorted({m['method'] for m in members})))}</td></tr>")
    table = ("<table><tr><th>data set</th><th>model</th><th>forget set</th><th>forget samples</th>"
             "<th>remaining samples</th><th>forgotten classes</th><th>methods</th></tr>" + "".join(items) + "</table>")
    return f"<ul>{''.join(lines)}</ul>{table}"


def build_handout(store, selection: Selection, device=None, progress=None, max_points: int = 1200,
                  reducer: str = "pca") -> str:
    """The report of ``selection`` as one HTML document (a ``str``); see the module docstring for its parts.

    ``store`` is only named in the header (``None`` leaves its path out: a shared server does not show its
    paths). ``device`` is where the figures' models run (default: the best available); ``max_points`` caps
    the samples drawn in each embedding map; ``reducer`` is ``pca`` (instant) or ``umap``.
    """
    from unlearn_core.device import pick_device
    from unlearn_core.store import code_version

    device = device if hasattr(device, "type") else pick_device(device)
    settings = content.settings_of(selection.done)
    page = _Page()
    page.add(f"<h1>Unlearning report: {_esc(selection.title)}</h1>"
             f"<p class=\"note\">Built {datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')} by "
             f"Unlearning Lab ({_esc(code_version())})"
             + (f" from the run store <code>{_esc(store.path)}</code>" if store is not None else "")
             + ". This file is self-contained: it opens offline.</p>")
    page.add('<section id="setting"><h2>Setting</h2>' + _setting_section(selection, settings) + "</section>")

    page.add('<section id="metrics"><h2>Metrics</h2><p class="note">Mean over seeds ± the half-width of a '
             "two-sided 95 % Student-t interval of the mean (a single seed shows its value alone). Every value is in "
             "% except Avg. Gap (points), time (s) and the speed-up (x). <b>→ retrained</b>: the target is the "
             "retrained model's value (closer is better). A <code>retrain</code> run is the reference itself and "
             "is counted in the reference row, never as a candidate.</p>")
    for (dataset, model, forget), runs in settings.items():
        page.add(f"<h3>{_esc(dataset)} / {_esc(model)}, forget <code>{_esc(forget)}</code></h3>")
        page.add(_metric_table(content.metric_rows(runs)))
    page.add("</section>")

    _class_shift_section(page, settings)
    prepared = _prepare_settings(settings, device, progress)
    _embedding_section(page, settings, prepared, max_points, reducer)
    _spectrum_section(page, settings, prepared)
    _hybrid_section(page, settings, prepared)
    _evidence_section(page, selection.done)
    _unfinished_section(page, selection.unfinished)
    _recipe_section(page, selection, code_version())
    title = _esc(f"Unlearning report: {selection.title}")
    return (f"<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{title}</title>"
            f"<style>{_STYLE}</style></head><body>{''.join(page.parts)}</body></html>")


def _name(chart: str, setting: tuple, method: str | None = None, run_id: int | None = None) -> str:
    from unlearn_core.slides import figure_filename

    return figure_filename(chart, method=method, dataset=setting[0], forget=setting[2], run_id=run_id)


def _class_shift_section(page: _Page, settings: dict) -> None:
    from unlearn_core.figures import per_class_heatmap

    page.add('<section id="class-shifts"><h2>Per-class shifts</h2><p class="note">Test accuracy per class minus '
             "the original model's (points, mean over seeds). Red = accuracy lost. A retained class that fell "
             "further than in the retrained row is over-unlearning.</p>")
    for setting, runs in settings.items():
        shift, forgotten = content.class_shift(runs)
        if shift.empty:
            page.add(f"<p class=\"note\">{_esc(setting[2])}: no per-class accuracies in these reports.</p>")
            continue
        fig = per_class_heatmap(shift, forgotten)
        fig.update_layout(title=f"{setting[0]} / {setting[1]}, forget {setting[2]}: per-class test accuracy change")
        page.figure(fig, _name("class-shift", setting))
    page.add("</section>")


def _prepare_settings(settings: dict, device, progress) -> dict:
    """Per setting (the first few), the lowest seed's prepared setup; ``None`` where it cannot be built."""
    from unlearn_core.errors import UnlearnError

    prepared = {}
    for setting, runs in list(settings.items())[:MAX_SETTINGS_WITH_MODELS]:
        first = min(runs, key=lambda r: (int(r.get("seed") or 0), r["id"]))
        try:
            prepared[setting] = content.prepare_for(first, device, progress)
        except UnlearnError as error:
            prepared[setting] = error
    return prepared


def _skipped(page: _Page, setting: tuple, prepared: dict) -> bool:
    setup = prepared.get(setting)
    if setup is None:
        page.add(f"<p class=\"note\">{_esc(setting[2])}: not drawn (only the first {MAX_SETTINGS_WITH_MODELS} "
                 "settings get model-based figures).</p>")
        return True
    if isinstance(setup, Exception):
        page.add(f"<p class=\"note\">{_esc(setting[2])}: the models could not be prepared: {_esc(setup)}</p>")
        return True
    return False


def _embedding_section(page: _Page, settings: dict, prepared: dict, max_points: int, reducer: str) -> None:
    from unlearn_core.figures import embedding_scatter, legend_html, shared_ranges

    page.add('<section id="embeddings"><h2>Aligned embeddings</h2><p class="note">Penultimate features of the '
             f"original (before) and each unlearned model on the same training samples, reduced together "
             f"({_esc(reducer.upper())}) into one map; the retrained model is aligned on the remaining samples "
             "(Procrustes) and placed in it. Crosses are forget samples. One run per group (its lowest seed).</p>")
    for setting, runs in settings.items():
        if _skipped(page, setting, prepared):
            continue
        setup = prepared[setting]
        groups = content.group_runs(runs)
        shown = {}
        missing = []
        for group in groups[:MAX_EMBEDDED_RUNS]:
            model = content.run_model(group.first, setup.bundle, setup.device)
            if model is None:
                missing.append(f"#{group.first['id']}")
            else:
                shown[f"#{group.first['id']} {group.label}"] = model
        page.add(f"<h3>{_esc(setting[0])} / {_esc(setting[1])}, forget <code>{_esc(setting[2])}</code> "
                 f"(seed {setup.seed})</h3>")
        mapped = content.aligned_embeddings(setup, shown, max_points, reducer)
        coords = mapped["coords"]
        ranges = shared_ranges(*coords.values())
        names = setup.bundle.class_names
        page.add('<div class="grid">')
        for state, points in coords.items():
            title = {"before": "before (original)", "retrained": "retrained (aligned)"}.get(state, f"after: {state}")
            fig = embedding_scatter(points, mapped["labels"], mapped["idx"], mapped["forget_mask"], names,
                                    title=title, height=380, ranges=ranges, show_legend=False)
            method = state.split(" ")[1] if state.startswith("#") else state
            run_id = int(state.split(" ")[0][1:]) if state.startswith("#") else None
            page.figure(fig, _name("embedding", setting, method, run_id))
        page.add("</div>" + legend_html(names, sorted(set(mapped["labels"].tolist())),
                                        forget=bool(mapped["forget_mask"].any())))
        notes = []
        if missing:
            notes.append(f"no stored checkpoint for {', '.join(missing)} (pruned or not saved)")
        if len(groups) > MAX_EMBEDDED_RUNS:
            notes.append(f"the first {MAX_EMBEDDED_RUNS} of {len(groups)} groups are drawn")
        if notes:
            page.add(f"<p class=\"note\">{_esc('; '.join(notes))}.</p>")
    page.add("</section>")


def _spectrum_section(page: _Page, settings: dict, prepared: dict) -> None:
    from unlearn_core.figures import rank_bars, spectrum_figure

    page.add('<section id="spectrum"><h2>UNSC: the retained-space spectrum</h2><p class="note">Per layer, the '
             "normalised eigenvalues of the remaining data's input Gram matrix and their cumulative energy; the "
             "run's eps picks the rank (the retained space), the rest is the null space UNSC updates in.</p>")
    drawn = 0
    for setting, runs in settings.items():
        groups = [g for g in content.group_runs(runs) if g.method == "unsc"]
        if not groups or _skipped(page, setting, prepared):
            continue
        for group in groups[:2]:
            params = group.first.get("params") or {}
            space = content.unsc_space(prepared[setting], params)
            eps = float(params.get("eps", 0.99))
            ranks = space.ranks(eps)
            names = list(space.layers)
            page.add(f"<h3>{_esc(setting[2])}: {_esc(group.label)} (run #{group.first['id']}, eps {eps:g})</h3>")
            fig = spectrum_figure([(n, space.layers[n].normalized_spectrum()) for n in names], eps, ranks)
            page.figure(fig, _name("spectrum", setting, "unsc", group.first["id"]))
            fig = rank_bars(names, [ranks[n] for n in names], [space.layers[n].input_dim for n in names])
            fig.update_layout(title="rank (retained) vs input dimension per layer")
            page.figure(fig, _name("ranks", setting, "unsc", group.first["id"]))
            drawn += 1
    if not drawn:
        page.add('<p class="note">No UNSC run in this selection.</p>')
    page.add("</section>")


def _hybrid_section(page: _Page, settings: dict, prepared: dict) -> None:
    from unlearn_core.figures import framed_mask

    page.add('<section id="hybrids"><h2>NatMU: hybrids</h2><p class="note">Forget images blended with remaining '
             "images of the classes the original confuses them with (their partners), each labelled with the "
             "partner's class; the masks give the forget image's weight (white = all of it).</p>")
    drawn = 0
    for setting, runs in settings.items():
        groups = [g for g in content.group_runs(runs) if g.method == "natmu"]
        if not groups or _skipped(page, setting, prepared):
            continue
        setup = prepared[setting]
        scale = max(1, 48 // max(setup.bundle.image_size))
        for group in groups[:2]:
            gallery = content.natmu_gallery(setup, group.first.get("params") or {})
            names = gallery["class_names"]
            page.add(f"<h3>{_esc(setting[2])}: {_esc(group.label)} (run #{group.first['id']}, "
                     f"delta {gallery['delta']:+g})</h3><p>masks: " + "".join(
                         f'<img alt="mask {i}" src="{content.png_data_uri(framed_mask(m, scale))}"> '
                         for i, m in enumerate(gallery["masks"])) + "</p>")
            rows = []
            for i in range(len(gallery["forget_images"])):
                cells = [f'<td><img alt="forget" src="{content.png_data_uri(gallery["forget_images"][i], scale)}">'
                         f"<br>forget #{int(gallery['forget_index'][i])}<br>true "
                         f"{_esc(names[int(gallery['forget_labels'][i])])}</td>"]
                for k in range(gallery["hybrid_images"].shape[1]):
                    label = _esc(names[int(gallery["hybrid_labels"][i][k])])
                    partner = content.png_data_uri(gallery["partner_images"][i][k], scale)
                    hybrid = content.png_data_uri(gallery["hybrid_images"][i][k], scale)
                    cells.append(f'<td><img alt="partner" src="{partner}"><img alt="hybrid" src="{hybrid}">'
                                 f"<br>→ {label}</td>")
                rows.append("<tr>" + "".join(cells) + "</tr>")
            page.add('<table class="gallery">' + "".join(rows) + "</table>")
            drawn += 1
    if not drawn:
        page.add('<p class="note">No NatMU run in this selection.</p>')
    page.add("</section>")


def _evidence_section(page: _Page, runs: list[dict]) -> None:
    from unlearn_core.evidence import format_evidence
    from unlearn_core.figures import probe_bars, relearn_curves, unlearning_curves

    page.add('<section id="evidence"><h2>Evidence of forgetting</h2><p class="note">The deeper measurements the '
             "runs asked for (docs/EVIDENCE.md): a probe of the features, the steps to relearn the forget set, "
             "and the unlearning curve.</p>")
    with_evidence = [r for r in runs if r["report"].get("evidence")]
    # One run per group (its lowest seed), at most MAX_EVIDENCE_RUNS: a sweep with evidence has one per run.
    chosen = []
    for members in content.settings_of(with_evidence).values():
        chosen += [group.first for group in content.group_runs(members)]
    for run in chosen[:MAX_EVIDENCE_RUNS]:
        evidence, method = run["report"]["evidence"], run["method"]
        setting = (run["dataset"], run["model"], run["forget"])
        page.add(f"<h3>run #{run['id']} {_esc(method)} (seed {run.get('seed')}, forget "
                 f"<code>{_esc(run['forget'])}</code>)</h3><pre>{_esc(chr(10).join(format_evidence(evidence)))}</pre>")
        if evidence.get("probe"):
            page.figure(probe_bars(evidence["probe"], method), _name("probe", setting, method, run["id"]))
        if evidence.get("relearn"):
            page.figure(relearn_curves(evidence["relearn"], method), _name("relearn", setting, method, run["id"]))
        if evidence.get("curves"):
            page.figure(unlearning_curves(evidence["curves"], method), _name("curve", setting, method, run["id"]))
    if len(with_evidence) > min(len(chosen), MAX_EVIDENCE_RUNS):
        page.add(f'<p class="note">Shown: {min(len(chosen), MAX_EVIDENCE_RUNS)} of the {len(with_evidence)} runs '
                 "with evidence (one per method and parameters, its lowest seed).</p>")
    if not with_evidence:
        page.add('<p class="note">No run in this selection asked for evidence (<code>--evidence probe,relearn,'
                 "curves</code> adds it).</p>")
    page.add("</section>")


def _unfinished_section(page: _Page, unfinished: list[dict]) -> None:
    page.add('<section id="unfinished"><h2>Runs that did not finish</h2>')
    if unfinished:
        page.add("<ul>" + "".join(f"<li>#{r['id']} {_esc(r.get('method'))} seed {r.get('seed')} on "
                                  f"<code>{_esc(r.get('forget'))}</code>: <b>{_esc(r.get('status'))}</b> "
                                  f"{_esc(r.get('error') or '')}</li>" for r in unfinished) + "</ul>")
    else:
        page.add('<p class="note">Every selected run finished.</p>')
    page.add("</section>")


def _recipe_section(page: _Page, selection: Selection, version: str) -> None:
    from unlearn_core.checkpoints import CheckpointCache

    page.add('<section id="recipe"><h2>Recipe to reproduce</h2><p class="note">Each command runs one run again and '
             "records it in the run store of <code>UNLEARN_DATA_DIR</code>; the original and retrained models come "
             "from the checkpoint cache or are trained with the recipe below (same seeds, same bytes).</p>")
    if selection.sweep is not None:
        page.add(f'<h3>The sweep</h3><pre class="sweep-command">'
                 f"{_esc(sweep_command(selection.sweep['tag'], selection.sweep['spec']))}</pre>")
    page.add("<h3>Each run</h3><table><tr><th>run</th><th>method</th><th>seed</th><th>parameters</th>"
             "<th>code version</th><th>command</th></tr>")
    for run in selection.done:
        params = ", ".join(f"{k}={v}" for k, v in sorted((run.get("params") or {}).items())) or "–"
        page.add(f'<tr><td>#{run["id"]}</td><td>{_esc(run["method"])}</td><td>{run.get("seed")}</td>'
                 f"<td class=\"text\">{_esc(params)}</td><td>{_esc(run.get('code_version'))}</td>"
                 f'<td class="text"><pre class="command" data-run-id="{run["id"]}">{_esc(run_command(run))}</pre>'
                 "</td></tr>")
    page.add("</table><h3>Data and training recipe</h3><table><tr><th>data set</th><th>SHA-256 of its tensors</th>"
             "<th>training recipe of the original and retrained models</th></tr>")
    from unlearn_core.data import load_dataset

    for dataset in sorted({r["dataset"] for r in selection.done}):
        recipes = sorted({json.dumps((r.get("config") or {}).get("recipe"), sort_keys=True)
                          for r in selection.done if r["dataset"] == dataset})
        page.add(f'<tr><td>{_esc(dataset)}</td><td class="text"><code>{dataset_sha256(load_dataset(dataset))}'
                 f'</code></td><td class="text"><code>{_esc("; ".join(recipes))}</code></td></tr>')
    page.add("</table><h3>Checkpoints (SHA-256 of the weights)</h3><p class=\"note\">Over every tensor of the "
             "checkpoint's state dict (name, dtype, shape, bytes) in name order: the same model gives the same hash "
             "whatever metadata its file holds.</p><table><tr><th>run</th><th>original</th>"
             "<th>retrained</th><th>unlearned</th></tr>")
    cache = CheckpointCache()

    def cached(key):
        return (weights_sha256(cache.path_for(key)) if key else None) or "–"

    for run in selection.done:
        config = run.get("config") or {}
        page.add(f"<tr><td>#{run['id']}</td><td class=\"text\"><code>{cached(config.get('original_checkpoint'))}"
                 f"</code></td><td class=\"text\"><code>{cached(config.get('retrained_checkpoint'))}</code></td>"
                 f"<td class=\"text\"><code>{weights_sha256(run.get('checkpoint_path')) or '– (none kept)'}</code>"
                 "</td></tr>")
    versions = package_versions()
    page.add("</table><h3>Software</h3><table class=\"versions\"><tr><th>package</th><th>version</th></tr>"
             f"<tr><td>unlearn_core (code commit)</td><td><code>{_esc(version)}</code></td></tr>"
             + "".join(f"<tr><td>{_esc(k)}</td><td><code>{_esc(v)}</code></td></tr>" for k, v in versions.items())
             + "</table></section>")


def write_handout(path, html_text: str, store_path=None) -> None:
    """Write the report atomically to ``path`` (checked like every output: never onto a managed file)."""
    from unlearn_core.outputs import check_output_path, write_output_bytes

    check_output_path(path, store_path=store_path)
    write_output_bytes(path, html_text.encode("utf-8"), "report")
