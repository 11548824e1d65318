"""The nightly site: static pages written next to the results store, opened from ``file://`` with no network
(no CDN, no fetch, plots inlined as SVG).

- ``index.html``: scenarios x sessions; each cell holds one mark per run, coloured by whether the run passed
  (its verdict matched the scenario's expectation), red with a bold border for a safety failure, linked to
  the run's page; per scenario its flake rate, first failing session and the latest session's mark (NEW,
  ongoing, resolved).
- ``trends.html``: recovery time, freshness p99, throughput and suite wall time per session, each with the
  noise band of earlier sessions and a flag where a session left it.
- each run's own ``report.html`` (``harness.report``), redrawn with a link back to the index.
- ``cdc-chaos report diff A B``: what changed between two runs (:func:`diff_runs`).
"""

from __future__ import annotations

import html
import json
import os
from pathlib import Path
from typing import Any

from harness import plots
from harness.report import STYLE, refresh_html
from harness.store import Run, RunStore

CELL_STYLE = """.grid td.cell{white-space:nowrap}.run{display:inline-block;width:1.3em;height:1.3em;margin:1px;
border-radius:3px;text-align:center;color:#fff;text-decoration:none;font-size:12px;line-height:1.3em}
.run.pass{background:#2a7f62}.run.fail{background:#e67e22}.run.safety{background:#c0392b;outline:2px solid #000}
.mark{font-size:11px;padding:1px 4px;border-radius:3px;color:#fff}.mark.new{background:#c0392b}
.mark.ongoing{background:#7f8c8d}.mark.resolved{background:#2a7f62}.mark.flaky{background:#e67e22}"""


def _page(title: str, body: str, extra_style: str = "") -> str:
    return (f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{STYLE}{extra_style}</style></head><body>{body}</body></html>")


def _nav(prefix: str = "") -> str:
    return (f"<nav><a href='{prefix}index.html'>index</a><a href='{prefix}trends.html'>trends</a></nav>")


def run_href(store: RunStore, run: Run) -> str:
    return os.path.relpath(Path(run.report_dir) / "report.html", store.directory)


def write_site(store: RunStore) -> dict[str, Path]:
    """(Re)write the index, the trends page and every run page's navigation; returns their paths."""
    out = {"index": store.directory / "index.html", "trends": store.directory / "trends.html"}
    out["index"].write_text(render_index(store))
    out["trends"].write_text(render_trends(store))
    for run in store.runs():
        d = Path(run.report_dir)
        if (d / "result.json").exists():
            back = os.path.relpath(store.directory, d) + "/"
            expectation = "CLEAN" if not run.expected else "convicted: " + " or ".join(run.expected)
            refresh_html(d, nav=_nav(back), expectation=expectation)
    return out


def _sources(scenario: str) -> list[tuple[str, str]]:
    """The public failure reports a catalogue scenario cites (none for a name the catalogue lacks)."""
    from scenarios.catalogue import BY_NAME

    known = BY_NAME.get(scenario)
    return known.sources if known is not None else []


def _source_links(sources: list[tuple[str, str]]) -> str:
    return ", ".join(f"<a class='source' href='{html.escape(url)}'>{html.escape(tid)}</a>" if url
                     else html.escape(tid) for tid, url in sources)


def render_known_bugs(store: RunStore) -> str:
    """The catalogue's known-bug scenarios: the reports each reproduces (linked), what a passing run shows, and
    how its runs in this store went."""
    from scenarios.catalogue import known_bugs

    stored = set(store.scenarios())
    rows = []
    for sc in known_bugs():
        status = store.scenario_status(sc.name) if sc.name in stored else None
        runs = f"{status['passed']}/{status['runs']}" if status else "not run yet"
        rows.append(f"<tr class='known' data-scenario='{html.escape(sc.name)}'><th>{html.escape(sc.name)}</th>"
                    f"<td>{_source_links(sc.sources)}</td><td>{html.escape(sc.expectation)}</td>"
                    f"<td>{html.escape(sc.proves)}</td><td>{runs}</td></tr>")
    return ("<h2>Known bugs</h2><p>Public failure reports that could bite this pipeline, each reproduced by a "
            "scenario; all are fixed in today's versions or kept out by the pipeline's design, so each must stay "
            "CLEAN.</p><table id='known-bugs'><tr><th>scenario</th><th>reports</th><th>expected</th>"
            f"<th>a passing run shows</th><th>passed</th></tr>{''.join(rows)}</table>")


def render_index(store: RunStore) -> str:
    sessions = store.sessions()
    scenarios = store.scenarios()
    head = "".join(f"<th class='session' title='{html.escape(s.profile)} @ {html.escape(s.commit_sha[:10])}'>"
                   f"{html.escape(s.id)}<br><span class='muted'>{html.escape(s.profile)}</span></th>" for s in sessions)
    rows = []
    for name in scenarios:
        status = store.scenario_status(name)
        runs = store.runs(scenario=name)
        cells = []
        for s in sessions:
            marks = []
            for r in (r for r in runs if r.session == s.id):
                cls = "safety" if r.safety else ("pass" if r.passed else "fail")
                found = ", ".join(f"{k} {v}" for k, v in r.counts().items()) or "no anomaly"
                tip = f"{r.verdict} ({found}); seed {r.seed}" + ("" if r.passed else f"; {r.why}")
                marks.append(f"<a class='run {cls}' data-run='{r.id}' href='{html.escape(run_href(store, r))}' "
                             f"title='{html.escape(tip)}'>{'✓' if r.passed else '✗'}</a>")
            cells.append(f"<td class='cell' data-scenario='{html.escape(name)}' data-session='{s.id}'>"
                         f"{''.join(marks)}</td>")
        mark = status["mark"]
        badges = "".join([f"<span class='mark {mark}'>{mark.upper() if mark == 'new' else mark}</span>"
                          if mark != "ok" else "",
                          " <span class='mark flaky'>flaky</span>" if status["flaky"] else ""])
        sources = _sources(name)
        cited = f"<br><span class='muted'>reproduces {_source_links(sources)}</span>" if sources else ""
        rows.append(f"<tr class='scenario' data-scenario='{html.escape(name)}'><th>{html.escape(name)}{cited}</th>"
                    f"{''.join(cells)}<td>{status['passed']}/{status['runs']}</td>"
                    f"<td>{status['flake_rate']:.0%}</td><td>{html.escape(status['first_failing_session'] or '—')}"
                    f"</td><td>{badges}</td></tr>")
    legend = ("<p><span class='run pass'>✓</span> passed (verdict as expected) <span class='run fail'>✗</span> "
              "failed <span class='run safety'>✗</span> safety failure (a lake anomaly in a scenario expected "
              "CLEAN: never counted as flaky)</p>")
    windows = store.windows()
    total = len(store.runs())
    win_rows = "".join(f"<tr class='window'><td>{html.escape(w)}</td><td>{n} of {total}</td></tr>"
                       for w, n in windows.items())
    win_table = (f"<h2>Windows reached</h2><p>Narrow states faults were aimed at, and in how many runs the evidence "
                 f"shows one was hit.</p><table id='windows'><tr><th>window</th><th>runs</th></tr>{win_rows}</table>"
                 if windows else "<h2>Windows reached</h2><p id='windows'>none yet</p>")
    body = (f"{_nav()}<h1>cdc-chaos nightly</h1><p>{total} runs in {len(sessions)} sessions; store "
            f"<code>{html.escape(str(store.path))}</code></p>{legend}"
            f"<table class='grid'><tr><th>scenario</th>{head}<th>passed</th><th>flake rate</th>"
            f"<th>first failing</th><th>latest</th></tr>{''.join(rows)}</table>{win_table}"
            f"{render_known_bugs(store)}")
    return _page("cdc-chaos nightly", body, CELL_STYLE)


TREND_LABELS = {"recovery_s": ("Recovery: lag back to normal after a heal (median of the session)", "seconds"),
                "freshness_p99_s": ("Freshness p99: commit -> committed Parquet (median of the session)", "seconds"),
                "throughput": ("Throughput: changes committed per second (median of the session)", "changes/s"),
                "suite_wall_s": ("Suite wall time per session", "seconds")}


def render_trends(store: RunStore) -> str:
    parts = [_nav(), "<h1>Trends across sessions</h1>",
             "<p>Band: median ± max(3 × 1.4826 × MAD, 10 %) of up to 10 earlier sessions, from the third session "
             "on; a red ring marks a session outside it.</p>"]
    for name, points in store.trends().items():
        title, unit = TREND_LABELS[name]
        flagged = [p["session"] for p in points if p["flagged"]]
        parts.append(f"<h2 id='{name}'>{html.escape(title)}</h2>")
        if flagged:
            parts.append(f"<p class='flag'>outside the band: {html.escape(', '.join(flagged))}</p>")
        parts.append("<div class='fig'>" + plots.trend_figure(
            title, unit, [(p["session"], p["value"]) for p in points], [p["band"] for p in points],
            [p["flagged"] for p in points]) + "</div>")
    return _page("cdc-chaos trends", "".join(parts))


# --- diff -------------------------------------------------------------------------------------------------

def load_run(ref: str, store: RunStore | None = None) -> dict[str, Any]:
    """A run's ``result.json`` by report directory, or by run id in ``store``."""
    path = Path(ref)
    if not path.is_dir() and store is not None and ref.isdigit():
        path = Path(store.run(int(ref)).report_dir)
    result_file = path / "result.json"
    if not result_file.exists():
        raise FileNotFoundError(f"{ref}: not a run directory with result.json (nor a run id in the store)")
    data: dict[str, Any] = json.loads(result_file.read_text())
    data["_dir"] = str(path)
    return data


def run_figures(result: dict[str, Any]) -> dict[str, Any]:
    stats = result.get("stats", {})
    fresh = stats.get("freshness_summary", {})
    rec = [r.get("lag_normal_after_s") for r in stats.get("recovery", [])]
    tput = [n for _, n in result.get("throughput", [])]
    return {
        "verdict": result["verdict"]["verdict"],
        "anomalies": {k: v["count"] for k, v in result["verdict"]["anomalies"].items() if v.get("count")},
        "faults": [f"{e['nemesis']}@{(e['wall_ms'] - result.get('t0_wall_ms', 0)) / 1000:.0f}s"
                   for e in result.get("timeline", []) if e["phase"] == "inject"],
        "recovery_s": rec,
        "freshness_p50_s": fresh.get("p50_ms", 0) / 1000 if fresh.get("n") else None,
        "freshness_p99_s": fresh.get("p99_ms", 0) / 1000 if fresh.get("n") else None,
        "throughput_per_s": round(sum(tput) / len(tput), 1) if tput else None,
        "wall_s": stats.get("wall_s"),
        "committed_changes": sum((stats.get("workload", {}).get("committed_changes") or {}).values()),
    }


def diff_runs(a: dict[str, Any], b: dict[str, Any]) -> list[tuple[str, Any, Any, str]]:
    """(figure, A, B, change) for every figure of the two runs; change is '' when equal."""
    fa, fb = run_figures(a), run_figures(b)
    rows = []
    for key in fa:
        va, vb = fa[key], fb[key]
        change = ""
        if va != vb:
            if isinstance(va, int | float) and isinstance(vb, int | float) and va:
                change = f"{(vb - va) / abs(va):+.0%}"
            else:
                change = "changed"
        rows.append((key, va, vb, change))
    return rows


def format_diff(a: dict[str, Any], b: dict[str, Any]) -> str:
    rows = diff_runs(a, b)
    head = (f"A: {a.get('name')} seed {a.get('seed')} ({a['_dir']})\nB: {b.get('name')} seed {b.get('seed')} "
            f"({b['_dir']})")
    width = max(len(k) for k, *_ in rows)
    lines = [f"{k:<{width}}  {json.dumps(va, default=str):<30}  {json.dumps(vb, default=str):<30}  {c}"
             for k, va, vb, c in rows]
    return head + "\n" + "\n".join(lines)
