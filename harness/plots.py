"""Plots for reports, drawn with matplotlib and inlined as SVG (the pages open from ``file://`` with no
network).  Text stays text (``svg.fonttype = none``), so a reader can search the labels, and every fault band
carries an id (``fault-band-N``) and its kind as a label, as Jepsen's ``perf`` plots shade theirs.

Inputs are the plain dicts of ``result.json`` (``RunResult.to_dict``), so a page can be redrawn from a stored
run without the harness objects that made it.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

import matplotlib

matplotlib.use("Agg")   # headless: no display on CI or a nightly box

import matplotlib.pyplot as plt  # after the backend is chosen
from matplotlib.figure import Figure

plt.rcParams.update({"svg.fonttype": "none", "font.size": 9, "axes.spines.top": False,
                     "axes.spines.right": False, "svg.hashsalt": "cdc-chaos"})

#: one colour per fault family, so the same kind looks the same on every page
FAULT_COLOURS = {"kill": "#e4572e", "pause": "#f3a712", "network": "#669bbc", "storage": "#8d6a9f",
                 "purge": "#29335c", "other": "#999999"}
OUTCOME_COLOURS = {"ok": "#2a9d8f", "fail": "#e76f51", "info": "#f4a261", "rolled_back": "#8d99ae",
                   "pending": "#bbbbbb"}


def fault_family(nemesis: str) -> str:
    for key, family in (("kill", "kill"), ("restart", "kill"), ("pause", "pause"), ("network", "network"),
                        ("partition", "network"), ("latency", "network"), ("drops", "network"),
                        ("storage", "storage"), ("outage", "storage"), ("purge", "purge")):
        if key in nemesis:
            return family
    return "other"


def fault_bands(result: dict[str, Any]) -> list[tuple[float, float, float, str]]:
    """(inject s, heal start s, heal done s, nemesis) for every injected fault, from the timeline's inject
    and heal events (a heal records when it began; restarting a component can take a while)."""
    t0_ms = result.get("t0_wall_ms", 0)
    end = _t_end(result)
    bands: list[tuple[float, float, float, str]] = []
    open_faults: dict[str, list[float]] = {}
    for ev in result.get("timeline", []):
        t = (ev["wall_ms"] - t0_ms) / 1000
        if ev["phase"] == "inject":
            open_faults.setdefault(ev["nemesis"], []).append(t)
        elif ev["phase"] == "heal" and open_faults.get(ev["nemesis"]):
            began = (ev["heal_started_ms"] - t0_ms) / 1000 if ev.get("heal_started_ms") else t
            bands.append((open_faults[ev["nemesis"]].pop(0), began, t, ev["nemesis"]))
    bands += [(s, max(s, end), max(s, end), n) for n, starts in open_faults.items() for s in starts]
    return sorted(bands)


def _t_end(result: dict[str, Any]) -> float:
    stats = result.get("stats", {})
    ts = [t for t, _ in result.get("throughput", [])] + [t for t, _ in stats.get("lag_samples", [])]
    return max([*ts, float(stats.get("workload_s") or 0), 1.0])


def _shade(ax: Any, bands: Sequence[tuple[float, float, float, str]], label: bool) -> None:
    """The fault's window solid, and the heal's own duration (a restart, a re-snapshot) hatched after it."""
    for i, (a, b, c, name) in enumerate(bands):
        colour = FAULT_COLOURS[fault_family(name)]
        ax.axvspan(a, max(b, a + 0.3), color=colour, alpha=0.22, lw=0, gid=f"fault-band-{i}" if label else None)
        if c > b + 0.3:
            ax.axvspan(b, c, facecolor="none", edgecolor=colour, alpha=0.5, lw=0, hatch="///",
                       gid=f"heal-band-{i}" if label else None)
        if label:
            ax.annotate(name, (a, 0.97), xycoords=("data", "axes fraction"), xytext=(3, 0), va="top",
                        textcoords="offset points", fontsize=8, color="#333", gid=f"fault-label-{i}")


def to_svg(fig: Figure) -> str:
    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight")
    plt.close(fig)
    svg = buf.getvalue()
    return svg[svg.index("<svg"):]   # inline: no XML prolog or doctype


def run_figure(result: dict[str, Any]) -> str:
    """One figure per run, panels sharing the time axis: changes applied per second, the job's consumer
    lag, commit-to-lake freshness and checkpoint durations; every fault a shaded, labelled band."""
    stats = result.get("stats", {})
    bands = fault_bands(result)
    fig, axes = plt.subplots(4, 1, figsize=(9.5, 7.2), sharex=True, gridspec_kw={"hspace": 0.35})
    tput = result.get("throughput", [])
    axes[0].plot([t for t, _ in tput], [n for _, n in tput], color="#1d3557", lw=1.2)
    axes[0].set_ylabel("changes/s")
    axes[0].set_title("Changes committed per second (faults shaded; hatched: the heal under way)", loc="left")
    lag = stats.get("lag_samples", [])
    axes[1].plot([t for t, _ in lag], [n for _, n in lag], color="#457b9d", lw=1.2)
    axes[1].set_ylabel("records")
    axes[1].set_title("Consumer lag of the job (topic end - committed offsets)", loc="left")
    fresh = stats.get("freshness", [])
    if fresh:
        axes[2].plot([t for t, _, _ in fresh], [p / 1000 for _, p, _ in fresh], color="#2a9d8f", lw=1.2, label="p50")
        axes[2].plot([t for t, _, _ in fresh], [m / 1000 for _, _, m in fresh], color="#e76f51", lw=1.0, label="max")
        axes[2].legend(loc="upper right", fontsize=8, frameon=False)
    else:
        axes[2].text(0.5, 0.5, "no freshness figures (no GTIDs)", transform=axes[2].transAxes, ha="center")
    axes[2].set_ylabel("seconds")
    axes[2].set_title("Freshness: commit -> visible in committed Parquet, by commit second", loc="left")
    cps = stats.get("checkpoints", [])
    for status, colour in (("COMPLETED", "#264653"), ("FAILED", "#e63946")):
        pts = [(t, d / 1000) for t, d, _s, st in cps if st == status]
        if pts:
            axes[3].scatter([t for t, _ in pts], [d for _, d in pts], s=12, color=colour, label=status.lower())
    if cps:
        axes[3].legend(loc="upper right", fontsize=8, frameon=False)
    axes[3].set_ylabel("seconds")
    axes[3].set_title("Checkpoint duration, by trigger time", loc="left")
    axes[3].set_xlabel("seconds since the workload started")
    for i, ax in enumerate(axes):
        _shade(ax, bands, label=i == 0)
        ax.set_xlim(left=min([0.0, *(t for t, _ in lag)]), right=_t_end(result))
        ax.grid(alpha=0.25)
    return to_svg(fig)


def ops_figure(result: dict[str, Any]) -> str:
    """The operation timeline: one lane per client worker, a mark per second it completed transactions,
    coloured by outcome (failed, indeterminate and rolled-back transactions drawn over the successful ones)."""
    ops = result.get("ops", [])
    workers = sorted({w for _, w, _, _ in ops}) or [0]
    fig, ax = plt.subplots(figsize=(9.5, 0.45 * len(workers) + 1.2))
    for outcome in ("ok", "rolled_back", "info", "fail", "pending"):
        pts = [(t, w, n) for t, w, o, n in ops if o == outcome]
        if pts:
            ax.scatter([t for t, _, _ in pts], [w for _, w, _ in pts], s=[min(60, 6 + 2 * n) for *_, n in pts],
                       marker="|" if outcome == "ok" else "o", color=OUTCOME_COLOURS.get(outcome, "#333"),
                       label=outcome)
    _shade(ax, fault_bands(result), label=True)
    ax.set_yticks(workers, [f"worker {w}" for w in workers])
    ax.set_xlabel("seconds since the workload started")
    ax.set_title("Operation timeline: transactions completed per worker and second, by outcome", loc="left")
    ax.set_xlim(0, _t_end(result))
    if ops:
        ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8, frameon=False)
    return to_svg(fig)


def trend_figure(title: str, unit: str, points: Sequence[tuple[str, float | None]],
                 band: Sequence[tuple[float, float] | None], flagged: Sequence[bool]) -> str:
    """A metric per night with the noise band from earlier nights and a red mark where a night left it."""
    fig, ax = plt.subplots(figsize=(9.5, 2.4))
    xs = list(range(len(points)))
    ys = [v for _, v in points]
    ax.plot([x for x, y in zip(xs, ys, strict=True) if y is not None], [y for y in ys if y is not None],
            marker="o", ms=4, color="#1d3557", lw=1.2)
    lo = [b[0] if b else None for b in band]
    hi = [b[1] if b else None for b in band]
    idx = [i for i, b in enumerate(band) if b]
    if idx:
        ax.fill_between(idx, [lo[i] for i in idx], [hi[i] for i in idx], color="#a8dadc", alpha=0.5, lw=0,
                        label="noise band (earlier nights)", gid="noise-band")
    bad = [i for i, f in enumerate(flagged) if f and ys[i] is not None]
    if bad:
        ax.scatter(bad, [ys[i] for i in bad], s=60, facecolors="none", edgecolors="#e63946", lw=1.8,
                   label="outside the band", gid="trend-flag")
    ax.set_xticks(xs, [n for n, _ in points], rotation=30, ha="right", fontsize=7)
    ax.set_ylabel(unit)
    ax.set_title(title, loc="left")
    ax.grid(alpha=0.25)
    if idx or bad:
        ax.legend(loc="upper left", fontsize=8, frameon=False)
    return to_svg(fig)
