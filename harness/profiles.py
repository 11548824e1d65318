"""Run profiles: how long and how hard a scenario's workload runs.  One definition, read by pytest
(``--profile``), ``cdc-chaos run``/``nightly`` (``--profile``) and the benchmarks.

- ``ci``: short and light, so the whole catalogue fits a CI job (scenarios marked nightly-only are left out);
- ``nightly``: minutes at a rate where checkpoint alignment, backpressure and large pending files show;
- ``load``: the capacity issue's chaos-at-load figure.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Profile:
    name: str
    duration_s: float          # workload seconds per scenario
    rate: float                # changes per second the workload applies
    nightly_only: bool         # True: scenarios marked nightly-only run under this profile
    what: str


PROFILES: dict[str, Profile] = {p.name: p for p in [
    Profile("ci", 20.0, 100.0, False, "20 s at 100 changes/s; nightly-only scenarios left out"),
    Profile("nightly", 120.0, 1000.0, True, "2 minutes at 1,000 changes/s; the whole catalogue"),
    Profile("load", 60.0, 2000.0, True, "60 s at 2,000 changes/s; the whole catalogue"),
]}


def profile(name: str) -> Profile:
    try:
        return PROFILES[name]
    except KeyError:
        raise ValueError(f"unknown profile {name!r}; known: {', '.join(PROFILES)}") from None
