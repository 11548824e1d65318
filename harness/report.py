"""Reports: one directory per run under ``reports/`` with the verdict JSON, the whole result, a human summary,
the run log and ``report.html``: the run page a person opens (from ``file://``, no network).

The run page shows throughput, consumer lag, commit-to-lake freshness and checkpoint durations over time with
each fault as a shaded band labelled by its kind (matplotlib, SVG inlined), the operation timeline, the
anomaly table with examples, the fault timeline with each fault's evidence, links to every log kept beside
it, and the exact replay command.  The nightly site (``harness.site``) links to these same pages.
"""

from __future__ import annotations

import html
import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.config import REPO_ROOT

if TYPE_CHECKING:
    from harness.result import RunResult

REPORTS_DIR = REPO_ROOT / "reports"
NIGHTLY_DIR = REPORTS_DIR / "nightly"      # the nightly results store and its site, by default

VERDICT_COLOURS = {"CLEAN": "#2a7f62", "ANOMALIES": "#c0392b", "STALLED": "#c87f0a"}

STYLE = """body{font-family:system-ui,sans-serif;margin:1.5em 2em;color:#222;max-width:1100px}
td,th{border:1px solid #ccc;padding:4px 6px;vertical-align:top;text-align:left}
table{border-collapse:collapse;margin:.5em 0}code,pre{font-size:11px}pre{white-space:pre-wrap}
h1 .verdict{padding:0 .3em;border-radius:4px;color:#fff}nav a{margin-right:1em}
.fig svg{max-width:100%;height:auto}.muted{color:#777}"""


def report_dir(name: str, seed: int | None, root: Path | None = None) -> Path:
    d = (root or REPORTS_DIR) / (f"{time.strftime('%Y%m%d-%H%M%S')}-{name}" + ("" if seed is None else f"-seed{seed}"))
    d.mkdir(parents=True, exist_ok=True)
    return d


def write_report(directory: Path, run_result: RunResult, expectation: str = "CLEAN") -> dict[str, Path]:
    """Write ``verdict.json`` (stable schema), ``result.json`` (everything), ``summary.txt``, ``report.html``."""
    result = run_result.to_dict()
    paths = {
        "verdict": directory / "verdict.json",
        "result": directory / "result.json",
        "summary": directory / "summary.txt",
        "html": directory / "report.html",
    }
    paths["verdict"].write_text(json.dumps(result["verdict"], indent=2, default=str))
    paths["result"].write_text(json.dumps(result, indent=2, default=str))
    paths["summary"].write_text(result.get("summary", ""))
    paths["html"].write_text(render_html(result, directory, expectation=expectation))
    return paths


def refresh_html(directory: Path, nav: str = "", expectation: str = "CLEAN") -> Path:
    """Redraw a run directory's ``report.html`` from its ``result.json`` (e.g. once logs were added)."""
    result = json.loads((directory / "result.json").read_text())
    out = directory / "report.html"
    out.write_text(render_html(result, directory, nav=nav, expectation=expectation))
    return out


def log_links(directory: Path) -> list[tuple[str, str]]:
    """(label, relative href) of every log kept in a run directory."""
    found = [p for p in [directory / "run.log", directory / "component-logs.txt"] if p.exists()]
    logs_dir = directory / "logs"
    if logs_dir.is_dir():
        found += sorted(p for p in logs_dir.rglob("*") if p.is_file())
    return [(str(p.relative_to(directory)), str(p.relative_to(directory))) for p in found]


def render_html(result: dict[str, Any], directory: Path | None = None, nav: str = "",
                expectation: str = "CLEAN") -> str:
    from harness import plots

    verdict = result["verdict"]
    timeline = result.get("timeline", [])
    colour = VERDICT_COLOURS.get(verdict["verdict"], "#333")
    anomalies = "".join(
        f"<tr class='anomaly' data-class='{html.escape(k)}'><td>{html.escape(k)}</td><td>{v['count']}</td><td><code>"
        f"{html.escape(json.dumps(v['examples'][:3], default=str))[:1500]}</code></td></tr>"
        for k, v in verdict["anomalies"].items() if v.get("count"))
    faults = "".join(
        f"<tr><td>{(ev['wall_ms'] - result.get('t0_wall_ms', 0)) / 1000:.1f} s</td><td>{html.escape(ev['nemesis'])}</td>"
        f"<td>{html.escape(ev['phase'])}</td><td><code>{html.escape(json.dumps(_detail(ev), default=str))[:1200]}"
        f"</code></td></tr>" for ev in timeline)
    links = "".join(f"<li><a href='{html.escape(href)}'>{html.escape(label)}</a></li>"
                    for label, href in (log_links(directory) if directory else []))
    stats = result.get("stats", {})
    fresh = stats.get("freshness_summary", {})
    fresh_txt = (f"freshness p50 {fresh['p50_ms'] / 1000:.2f} s, p99 {fresh['p99_ms'] / 1000:.2f} s over "
                 f"{fresh['n']} changes" if fresh.get("n") else "freshness: none measured")
    recovery = "".join(
        f"<tr><td>{html.escape(r['nemesis'])}</td><td>{r['healed_at_s']}</td><td>{r['lag_normal_after_s']}</td>"
        f"<td>{r['lag_zero_after_s']}</td><td>{r.get('injected_at_s')}</td>"
        f"<td>{r.get('consumption_back_after_s')}</td></tr>" for r in stats.get("recovery", []))
    return f"""<!doctype html><html lang="en"><head><meta charset="utf-8">
<title>cdc-chaos {html.escape(result.get('name', ''))} seed {result.get('seed')}</title><style>{STYLE}</style></head><body>
{nav}
<h1>{html.escape(result.get('name', 'run'))} <span class="verdict" style="background:{colour}">{verdict['verdict']}</span></h1>
<p>expected: <b>{html.escape(expectation)}</b> · seed <b>{result.get('seed')}</b> · {html.escape(fresh_txt)} ·
workload {stats.get('workload_s')} s, run {stats.get('wall_s')} s</p>
<p id="phases" class="muted">where the run's time went: {html.escape(', '.join(f'{k} {v} s' for k, v in
(stats.get('phases_s') or {}).items()) or 'not recorded')}</p>
<p>replay: <code id="replay">{html.escape(result.get('replay', ''))}</code></p>
<p id="windows">windows reached: {html.escape(', '.join(result.get('windows') or []) or 'none')}</p>
<p class="muted">{html.escape(result.get('summary', '').splitlines()[0] if result.get('summary') else '')}</p>
<h2>Over time, faults shaded</h2><div class="fig" id="run-figure">{plots.run_figure(result)}</div>
<h2>Operation timeline</h2><div class="fig" id="ops-figure">{plots.ops_figure(result)}</div>
<h2>Anomalies</h2>{f'<table><tr><th>class</th><th>count</th><th>examples</th></tr>{anomalies}</table>' if anomalies else '<p>none</p>'}
<h2>Fault timeline and evidence</h2><table><tr><th>at</th><th>fault</th><th>phase</th><th>detail</th></tr>{faults}</table>
<h2>Recovery</h2><table><tr><th>fault</th><th>healed at (s)</th><th>lag back to normal after (s)</th><th>lag at idle floor after (s)</th><th>injected at (s)</th><th>reading at the pre-fault rate again after the injection (s)</th></tr>{recovery}</table>
<h2>Logs</h2><ul id="logs">{links or '<li>none kept</li>'}</ul>
<h2>Counts</h2><pre>{html.escape(json.dumps(verdict['counts'], indent=1, default=str))}</pre>
</body></html>"""


def _detail(ev: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in ev.items() if k not in ("nemesis", "phase", "wall_ms")}
