"""Reports: one directory per run under ``reports/`` with the verdict JSON, the fault timeline, the history,
a human summary and a small HTML page (the throughput of applied changes with each fault drawn as a band,
as Jepsen's reports do)."""

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


def report_dir(name: str, seed: int | None, root: Path | None = None) -> Path:
    d = (root or REPORTS_DIR) / (f"{time.strftime('%Y%m%d-%H%M%S')}-{name}" + ("" if seed is None else f"-seed{seed}"))
    d.mkdir(parents=True, exist_ok=True)
    return d


def write_report(directory: Path, run_result: RunResult) -> dict[str, Path]:
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
    paths["html"].write_text(render_html(result))
    return paths


def render_html(result: dict[str, Any]) -> str:
    verdict = result["verdict"]
    timeline = result.get("timeline", [])
    series: list[tuple[float, int]] = result.get("throughput", [])
    width, height = 760, 180
    t_end = max([t for t, _ in series] + [1.0])
    peak = max([n for _, n in series] + [1])
    t0_ms = result.get("t0_wall_ms", 0)

    def x(t: float) -> float:
        return 40 + (width - 60) * t / t_end

    bands = []
    open_faults: dict[str, float] = {}
    for ev in timeline:
        t = (ev["wall_ms"] - t0_ms) / 1000
        if ev["phase"] == "inject":
            open_faults[ev["nemesis"]] = t
        elif ev["phase"] == "heal" and ev["nemesis"] in open_faults:
            start = open_faults.pop(ev["nemesis"])
            bands.append((start, t, ev["nemesis"]))
    for name, start in open_faults.items():
        bands.append((start, t_end, name))
    rects = "".join(
        f'<rect x="{x(a):.1f}" y="10" width="{max(2.0, x(b) - x(a)):.1f}" height="{height - 30}" '
        f'fill="#f4b4b4" opacity="0.6"><title>{html.escape(n)}</title></rect>'
        f'<text x="{x(a):.1f}" y="22" font-size="10">{html.escape(n)}</text>' for a, b, n in bands)
    points = " ".join(f"{x(t):.1f},{height - 20 - (height - 40) * n / peak:.1f}" for t, n in series)
    anomalies = "".join(
        f"<tr><td>{html.escape(k)}</td><td>{v['count']}</td><td><code>"
        f"{html.escape(json.dumps(v['examples'][:3], default=str))[:600]}</code></td></tr>"
        for k, v in verdict["anomalies"].items())
    color = {"CLEAN": "#2a7", "ANOMALIES": "#c33", "STALLED": "#c80"}.get(verdict["verdict"], "#333")
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>cdc-chaos {html.escape(result.get('name', ''))}</title>
<style>body{{font-family:sans-serif;margin:2em}} td,th{{border:1px solid #ccc;padding:4px;vertical-align:top}}
table{{border-collapse:collapse}} code{{font-size:11px}}</style></head><body>
<h1>{html.escape(result.get('name', 'run'))} — <span style="color:{color}">{verdict['verdict']}</span></h1>
<p>seed <b>{result.get('seed')}</b> · replay: <code>{html.escape(result.get('replay', ''))}</code></p>
<h2>Changes applied per second, faults shaded</h2>
<svg width="{width}" height="{height}" style="border:1px solid #ddd">{rects}
<polyline fill="none" stroke="#36c" stroke-width="1.5" points="{points}"/>
<text x="5" y="{height - 5}" font-size="10">0 s</text><text x="{width - 60}" y="{height - 5}" font-size="10">{t_end:.0f} s</text>
<text x="5" y="20" font-size="10">{peak}/s</text></svg>
<h2>Anomalies</h2><table><tr><th>class</th><th>count</th><th>examples</th></tr>{anomalies}</table>
<h2>Counts</h2><pre>{html.escape(json.dumps(verdict['counts'], indent=1, default=str))}</pre>
<h2>Fault timeline</h2><pre>{html.escape(json.dumps(timeline, indent=1, default=str))}</pre>
<h2>Recovery and timings</h2><pre>{html.escape(json.dumps(result.get('stats', {}), indent=1, default=str))}</pre>
</body></html>"""
