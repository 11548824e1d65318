"""``cdc-chaos`` command line (also ``python -m harness``).

``up`` starts a detached supervisor that owns the stack (so the stack outlives the command, and the
supervisor's death still takes every component with it); ``down`` asks it to tear down.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from harness import log
from harness.config import ConfigError, StackConfig, load_config
from harness.process import pid_alive, port_open, tail
from harness.profiles import PROFILES, profile
from harness.report import NIGHTLY_DIR
from harness.rundir import CURRENT, current_run_dir, runs_root


def cmd_setup(config: StackConfig, args: argparse.Namespace) -> int:
    from harness.install.all import install_everything

    install_everything(config)
    return 0


def cmd_serve(config: StackConfig, args: argparse.Namespace) -> int:
    """The detached supervisor behind `up`: start the stack, report, wait for SIGTERM, tear down."""
    from harness.stack import Stack

    ready = Path(args.ready_file)
    stop = False

    def on_term(signum: int, frame: Any) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    stack = Stack(config, label="cli")
    try:
        (runs_root() / CURRENT).write_text(str(stack.run.path))
        stack.start()
        ready.write_text(json.dumps({"ok": True, "run_dir": str(stack.run.path), "timings": stack.timings}))
        while not stop:
            time.sleep(0.5)
    except Exception as exc:  # noqa: BLE001 - reported to the waiting `up`
        ready.write_text(json.dumps({"ok": False, "error": str(exc)}))
        return 1
    finally:
        stack.down()
    # a clean stop leaves nothing behind; on failure the log stays for `up` to show
    Path(args.log_file).unlink(missing_ok=True)
    return 0


def cmd_up_docker(config: StackConfig) -> int:
    """``--backend docker``: the compose project, recorded as a run dir (``stack.json``, ``ports.json``) so
    ``status``, ``load`` and ``check`` read it as they read a local stack."""
    from harness.compose import BackendError, ComposeStack

    stack = ComposeStack(config)
    try:
        stack.start()
    except BackendError as exc:
        print(f"up: {exc}", file=sys.stderr)
        return 2
    endpoints = stack.endpoints()
    run_dir = runs_root() / f"docker-{time.strftime('%Y%m%d-%H%M%S')}"
    run_dir.mkdir(parents=True)
    (run_dir / "backend").write_text("docker")
    (run_dir / "stack.json").write_text(json.dumps(endpoints, indent=2))
    (run_dir / "ports.json").write_text(json.dumps({c: stack.address(c)[1] for c in
                                                    ("database", "kafka", "connect", "s3", "flink")}))
    (runs_root() / CURRENT).write_text(str(run_dir))
    print(json.dumps(endpoints, indent=2))
    return 0


def cmd_up(config: StackConfig, args: argparse.Namespace) -> int:
    if args.backend == "docker":
        return cmd_up_docker(config)
    ready = runs_root() / f".ready-{os.getpid()}"
    ready.unlink(missing_ok=True)
    log = runs_root() / f"supervisor-{os.getpid()}.log"
    argv = [sys.executable, "-m", "harness", "serve", "--ready-file", str(ready), "--log-file", str(log)]
    if args.config:
        argv[3:3] = ["--config", args.config]
    with open(log, "ab") as fh:
        proc = subprocess.Popen(argv, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
    print(f"starting the stack (supervisor pid {proc.pid}, log {log}) ...", file=sys.stderr)
    while not ready.exists():
        if proc.poll() is not None:
            print(tail(log, 60), file=sys.stderr)
            log.unlink(missing_ok=True)
            raise SystemExit(f"the stack supervisor exited with code {proc.returncode} (its log is above)")
        time.sleep(0.5)
    result = json.loads(ready.read_text())
    ready.unlink(missing_ok=True)
    if not result["ok"]:
        proc.wait(timeout=60)
        print(tail(log, 60), file=sys.stderr)
        log.unlink(missing_ok=True)
        print(result["error"], file=sys.stderr)
        return 1
    print(f"stack up in {result['timings'].get('total', 0):.1f}s: {result['run_dir']}", file=sys.stderr)
    print(json.dumps(json.loads((Path(result["run_dir"]) / "stack.json").read_text()), indent=2))
    return 0


def cmd_down(config: StackConfig, args: argparse.Namespace) -> int:
    run_dir = current_run_dir(args.run_dir)
    if (run_dir / "backend").exists():    # a compose project `up --backend docker` started
        import shutil

        from harness.compose import ComposeStack

        if shutil.which("docker"):
            ComposeStack(config).stop()
        shutil.rmtree(run_dir, ignore_errors=True)
        (runs_root() / CURRENT).unlink(missing_ok=True)
        return 0
    owner = int((run_dir / "owner.pid").read_text())
    if pid_alive(owner):
        os.kill(owner, signal.SIGTERM)
        deadline = time.monotonic() + 60
        while pid_alive(owner) and time.monotonic() < deadline:
            time.sleep(0.2)
    from harness.rundir import RunDir

    if run_dir.exists():
        RunDir(run_dir).remove()
    pointer = runs_root() / CURRENT
    if pointer.exists() and Path(pointer.read_text().strip()) == run_dir:
        pointer.unlink()
    print(f"stack {run_dir.name} is down")
    return 0


#: ``status --json``: {schema_version, healthy, run_dir, endpoints (as ``up`` prints them), ports {name: port},
#: listening {name: bool}}; exit 0 exactly when every listed port listens
STATUS_SCHEMA_VERSION = 1


def cmd_status(config: StackConfig, args: argparse.Namespace) -> int:
    run_dir = current_run_dir(args.run_dir)
    stack_json = run_dir / "stack.json"
    if not stack_json.exists():
        raise SystemExit(f"stack {run_dir.name} is still starting; try again shortly")
    endpoints = json.loads(stack_json.read_text())
    ports = json.loads((run_dir / "ports.json").read_text())
    listening = {name: port_open(port) for name, port in ports.items()}
    healthy = all(listening.values())
    if args.json:   # STATUS_SCHEMA_VERSION documents the shape (README, "status --json")
        print(json.dumps({"schema_version": STATUS_SCHEMA_VERSION, "healthy": healthy, "run_dir": str(run_dir),
                          "endpoints": endpoints, "ports": ports, "listening": listening}, indent=2))
    else:
        print(f"run dir: {run_dir}")
        for name, port in ports.items():
            print(f"  {name:<18} 127.0.0.1:{port:<6} {'up' if listening[name] else 'DOWN'}")
    return 0 if healthy else 1


def cmd_logs(config: StackConfig, args: argparse.Namespace) -> int:
    run_dir = current_run_dir(args.run_dir)
    comp_dir = run_dir / args.component
    if not comp_dir.is_dir():
        names = sorted(p.name for p in run_dir.iterdir() if p.is_dir())
        raise SystemExit(f"no component {args.component!r}; components: {names}")
    for path in sorted(comp_dir.rglob("*.log")):
        print(f"--- {path} ---\n{tail(path, args.lines)}")
    return 0


def cmd_demo(config: StackConfig, args: argparse.Namespace) -> int:
    from harness.demo import run_demo

    return run_demo(config, args)


def cmd_run(config: StackConfig, args: argparse.Namespace) -> int:
    """One catalogue scenario (or ``random``: a seeded random fault schedule) on its own stack, a report
    under reports/ with its schedule.json."""
    import random

    from harness.stack import Stack
    from scenarios.catalogue import BY_NAME, run_scenario

    if args.scenario == "random":
        from harness.search import random_scenario

        sc = random_scenario(args.faults, args.variant)
    elif args.scenario not in BY_NAME:
        raise SystemExit(f"unknown scenario {args.scenario!r}; known: random, {', '.join(sorted(BY_NAME))}")
    else:
        sc = BY_NAME[args.scenario]
    prof = profile(args.profile)
    args.duration = prof.duration_s if args.duration is None else args.duration
    args.rate = prof.rate if args.rate is None else args.rate
    seed = args.seed if args.seed is not None else random.randrange(1, 2**31)
    replay = f"cdc-chaos run {sc.name} --seed {seed} --duration {args.duration:g} --rate {args.rate:g}" + (
        f" --faults {args.faults} --variant {args.variant}" if sc.name == "random" else "")
    print(f"scenario {sc.name}, seed {seed} (replay: {replay})", file=sys.stderr)
    with Stack.up(sc.stack_config(config), label=f"run-{sc.name}") as stack:
        print(f"stack: {stack.config.kafka.brokers} Kafka broker(s), {stack.config.flink.taskmanagers} "
              "TaskManager(s)", file=sys.stderr)
        outcome = run_scenario(sc, stack, seed, duration_s=args.duration, rate=args.rate, replay=replay)
    print(outcome.result.summary)
    print(f"verdict: {outcome.report['verdict']}\nschedule: {outcome.report['schedule']}\n"
          f"report: {outcome.report['html']}")
    if not outcome.ok:
        print(f"scenario {sc.name} FAILED: {outcome.why}", file=sys.stderr)
    return 0 if outcome.ok else 1


def cmd_catalogue(config: StackConfig, args: argparse.Namespace) -> int:
    """The scenario catalogue for people: each scenario's fault, what a passing run shows, where it runs, and
    the public failure reports it reproduces (``--known``: only those scenarios); no stack."""
    from scenarios.catalogue import SCENARIOS, catalogue_text, describe, known_bugs

    chosen = known_bugs() if args.known else SCENARIOS
    if args.json:
        print(json.dumps([describe(s) for s in chosen], indent=2))
    else:
        print(catalogue_text(chosen))
    return 0


def cmd_replay(config: StackConfig, args: argparse.Namespace) -> int:
    """Run a report directory's schedule.json again on a fresh stack: the same workload seed, the same
    faults at the same times; print both verdicts."""
    from harness.search import load_schedule, scenario_from, target_classes
    from harness.stack import Stack
    from scenarios.catalogue import run_scenario

    try:
        doc = load_schedule(Path(args.report_dir))
    except FileNotFoundError as exc:
        print(f"replay: {exc}", file=sys.stderr)
        return 2
    sc = scenario_from(doc)
    found = []
    with Stack.up(sc.stack_config(config), label=f"replay-{sc.name}") as stack:
        for i in range(args.times):
            if i:
                stack.heal()
            outcome = run_scenario(sc, stack, int(doc["seed"]), duration_s=float(doc["duration_s"]),
                                   rate=float(doc["rate"]), replay=f"cdc-chaos replay {args.report_dir}", index=i)
            found.append(sorted(outcome.result.found()))
            print(f"replay {i + 1}/{args.times}: {outcome.result.verdict.verdict} {found[-1] or ''} "
                  f"({outcome.report['html']})")
    original = doc.get("found") or []
    # what must come back: the original's safety classes (else whatever it found); a CLEAN original, CLEAN
    want = target_classes(set(original)) if original else set()
    print(f"original: {'ANOMALIES ' + str(original) if original else 'CLEAN'}; a replay reproduces it when it "
          f"shows {sorted(want) or 'CLEAN'}")
    same = sum((want <= set(f)) if want else not f for f in found)
    print(f"reproduced in {same} of {len(found)} replay(s)")
    return 0 if same == len(found) else 1


def cmd_explore(config: StackConfig, args: argparse.Namespace) -> int:
    """Random schedules back to back on one stack until the budget is spent; every failing run is kept and
    shrunk (its smallest schedule beside it).  Exit 1 when any run failed."""
    import random

    from harness.search import explore
    from harness.stack import Stack

    base_seed = args.seed if args.seed is not None else random.randrange(1, 2**31)
    print(f"explore: base seed {base_seed} (replay the same draws with --seed {base_seed})", file=sys.stderr)
    with Stack.up(config, label="explore") as stack:
        found = explore(stack, random.Random(base_seed), budget_min=args.budget, faults=args.faults,
                        duration_s=args.duration, rate=args.rate, variant=args.variant, shrink_runs=args.shrink_runs)
    for f in found:
        print(f"FAILED seed {f['seed']}: {f['found']} -> shrunk to {f['shrunk']} ({f['report']})")
    print(f"explore: {len(found)} failing run(s)")
    return 1 if found else 0


def cmd_shrink(config: StackConfig, args: argparse.Namespace) -> int:
    """Remove faults and shorten windows while the failing run's anomaly class still appears; print and save
    the smallest failing schedule (``shrunk-schedule.json`` in the report directory)."""
    from harness.search import load_schedule, scenario_from, shrink_report
    from harness.stack import Stack

    report_dir = Path(args.report_dir)
    try:
        doc = load_schedule(report_dir)
    except FileNotFoundError as exc:
        print(f"shrink: {exc}", file=sys.stderr)
        return 2
    with Stack.up(scenario_from(doc).stack_config(config), label=f"shrink-{doc['scenario']}") as stack:
        try:
            out, attempts, kept = shrink_report(stack, report_dir, args.max_runs)
        except ValueError as exc:
            print(f"shrink: {exc}", file=sys.stderr)
            return 2
    print(f"shrunk {len(doc['faults'])} fault(s) to {len(out['faults'])} in {len(attempts)} run(s), keeping "
          f"{sorted(kept)}:")
    for f in out["faults"]:
        print(f"  {f['nemesis']} at {f['at_s']} s for {f['duration_s']} s")
    print(f"saved: {report_dir / 'shrunk-schedule.json'}")
    return 0


def _attached(config: StackConfig, args: argparse.Namespace) -> Any:
    from harness.stack import Stack

    return Stack.attach(current_run_dir(args.run_dir), config)


def cmd_job(config: StackConfig, args: argparse.Namespace) -> int:
    """Operate the pipeline's job on the stack `up` started: submit, status, cancel, savepoint, resume."""
    from harness.pipeline import JobError, JobRecord, Pipeline
    from harness.runner import new_job_config, source_position

    stack = _attached(config, args)
    run_dir = stack.run.path
    try:
        if args.action == "submit":
            if JobRecord.path(run_dir, args.name).exists() and not args.replace:
                raise JobError(f"a job named {args.name!r} was already submitted on this stack; cancel it and "
                               "pass --replace, or choose another --name")
            if args.start == "now":
                binlog_start, offsets = source_position(stack)
            else:
                from harness import kafka_client

                binlog_start = None
                offsets = {p: 0 for p in kafka_client.end_offsets(stack.kafka.bootstrap, config.kafka.topic)}
            # from "earliest" the job gets no explicit offsets (its startup mode is the topic's earliest)
            job = new_job_config(stack, args.prefix, args.name, offsets if args.start == "now" else None,
                                 variant=args.variant, checkpoint_interval_ms=args.checkpoint_interval_ms,
                                 parallelism=args.parallelism)
            pipeline = Pipeline(stack)
            job_id = pipeline.submit(job)
            pipeline.wait_running(job_id)
            record = JobRecord(args.name, job, job_id, args.prefix, binlog_start, offsets, int(time.time() * 1000))
            record.save(run_dir)
            print(json.dumps({"name": args.name, "job_id": job_id, "lake": job.lake_root,
                              "checkpoints": pipeline.checkpoint_dir(job)}, indent=2))
            return 0
        record = JobRecord.load(run_dir, args.name)
        pipeline = Pipeline.for_record(stack, record)
        if args.action == "status":
            status = pipeline.status(record.job_id)
            if args.json:
                print(json.dumps(status, indent=2, default=str))
            else:
                cps = status["checkpoints"]
                print(f"job {args.name} ({record.job_id}): {status['state']}, restarts {status['restarts']}, "
                      f"checkpoints completed {cps['completed']} (latest {cps['latest_id']}), "
                      f"consumer lag {status.get('consumer_lag')}, watermarks {status['watermarks']}")
            return 0 if status["state"] == "RUNNING" else 1
        if args.action == "cancel":
            pipeline.cancel(record.job_id)
            print(f"job {args.name} ({record.job_id}) cancelled; its checkpoints are retained for `job resume`")
            return 0
        if args.action == "savepoint":
            print(pipeline.stop_with_savepoint(record.job_id))
            return 0
        # resume: from a given checkpoint/savepoint, else the latest retained checkpoint found in S3
        path = args.path or pipeline.latest_retained_checkpoint()
        if path is None:
            raise JobError(f"no retained checkpoint under {pipeline.checkpoint_dir(record.config)}; nothing to "
                           "resume from")
        job_id = pipeline.submit(record.config, restore=path)
        pipeline.wait_running(job_id)
        record.job_id = job_id
        record.save(run_dir)
        print(json.dumps({"name": args.name, "job_id": job_id, "restored_from": path}, indent=2))
        return 0
    except JobError as exc:
        print(f"job {args.action} failed: {exc}", file=sys.stderr)
        return 1


def cmd_load(config: StackConfig, args: argparse.Namespace) -> int:
    """Apply a seeded workload to the running stack's database (order ids never reused on that stack)."""
    import random

    from harness.runner import allocate_order_ids
    from harness.workload import WorkloadClient, WorkloadConfig, generate, summarize

    stack = _attached(config, args)
    seed = args.seed if args.seed is not None else random.randrange(1, 2**31)
    first = allocate_order_ids(stack, int(args.duration * args.rate) + 1)
    print(f"load: seed {seed} (replay: cdc-chaos load --seed {seed} --duration {args.duration} --rate {args.rate})",
          file=sys.stderr)
    workload = generate(WorkloadConfig(seed=seed, duration_s=args.duration, rate=args.rate, first_order_id=first,
                                       late_fraction=args.late_fraction))
    client = WorkloadClient(workload, stack.database.connect, config.database.database)
    client.seed_customers()
    history = client.run()
    history.dump(stack.run.path / "jobs" / f"history-seed{seed}-{first}.jsonl")
    print(json.dumps(summarize(history), indent=2))
    return 0


def cmd_check(config: StackConfig, args: argparse.Namespace) -> int:
    """Judge a submitted job's lake against the database: quiesce, check, verdict JSON; exit 0 only if CLEAN."""
    from harness.pipeline import JobError, JobRecord, Pipeline
    from harness.report import report_dir
    from harness.runner import judge

    stack = _attached(config, args)
    try:
        record = JobRecord.load(stack.run.path, args.name)
    except JobError as exc:
        print(f"check: {exc}", file=sys.stderr)
        return 2
    pipeline = Pipeline.for_record(stack, record)
    verdict, qstats, _lake = judge(stack, pipeline, record.config, record.prefix, record.binlog_start,
                                   record.start_offsets, None, args.timeout,
                                   context={"job": record.name, "job_id": record.job_id,
                                            "lake": record.config.lake_root})
    verdict.context["quiescence"] = qstats
    out = report_dir(f"check-{record.name}", None, Path(args.out) if args.out else None)
    (out / "verdict.json").write_text(verdict.to_json())
    (out / "summary.txt").write_text(verdict.summary())
    print(verdict.to_json() if args.json else verdict.summary())
    print(f"verdict: {out / 'verdict.json'}", file=sys.stderr)
    return 0 if verdict.clean else 1


def cmd_nightly(config: StackConfig, args: argparse.Namespace) -> int:
    """The nightly session: every run into the store, the site rewritten, JUnit XML; exit 1 on any run whose
    verdict differs from its scenario's expectation."""
    from harness.nightly import NightlyOptions, run_nightly

    opts = NightlyOptions(profile=profile(args.profile),
                          scenarios=[n.strip() for n in args.scenarios.split(",") if n.strip()] if args.scenarios
                          else None, repeat=args.repeat, budget_min=args.budget, store=Path(args.store),
                          keep_nights=args.keep_nights, seed=args.seed,
                          junit=Path(args.junit) if args.junit else None)
    try:
        return run_nightly(config, opts)
    except ValueError as exc:
        print(f"nightly: {exc}", file=sys.stderr)
        return 2


def cmd_report(config: StackConfig, args: argparse.Namespace) -> int:
    from harness.site import format_diff, load_run, write_site
    from harness.store import RunStore

    store_dir = Path(args.store)
    store = RunStore.at(store_dir) if (store_dir / "runs.sqlite").exists() else None
    if args.report_command == "site":
        if store is None:
            print(f"no results store in {store_dir}: run `cdc-chaos nightly --store {store_dir}` first",
                  file=sys.stderr)
            return 2
        pages = write_site(store)
        print(f"index: {pages['index']}\ntrends: {pages['trends']}")
        return 0
    try:
        a, b = load_run(args.run_a, store), load_run(args.run_b, store)
    except (FileNotFoundError, KeyError) as exc:
        print(f"report diff: {exc}", file=sys.stderr)
        return 2
    print(format_diff(a, b))
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="cdc-chaos", description=__doc__)
    p.add_argument("--config", help="stack definition (default stack/stack.toml or $CDC_CHAOS_CONFIG)")
    p.add_argument("--backend", choices=["local", "docker"], default=None,
                   help="local processes (default) or stack/docker-compose.yml through testcontainers "
                   "(or $CDC_CHAOS_BACKEND); chaos commands need local")
    loud = p.add_mutually_exclusive_group()
    loud.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    loud.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only")
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("setup", help="install every component into the cache (idempotent)")
    sub.add_parser("up", help="start a stack in the background and print its endpoints")
    serve = sub.add_parser("serve", help=argparse.SUPPRESS)
    serve.add_argument("--ready-file", required=True)
    serve.add_argument("--log-file", required=True)
    for name, helptext in (("down", "stop the stack and delete its run dir"),
                           ("status", "show the stack's endpoints and which ports answer")):
        sp = sub.add_parser(name, help=helptext)
        sp.add_argument("--run-dir")
        if name == "status":
            sp.add_argument("--json", action="store_true", help="print every endpoint as JSON")
    logs = sub.add_parser("logs", help="tail a component's logs")
    logs.add_argument("component")
    logs.add_argument("-n", "--lines", type=int, default=100)
    logs.add_argument("--run-dir")
    demo = sub.add_parser("demo", help="the main job: stack up, pipeline, chaos run, verdict, report")
    demo.add_argument("--seed", type=int, default=None)
    demo.add_argument("--duration", type=float, default=30.0, help="workload seconds")
    demo.add_argument("--rate", type=float, default=50.0, help="operations per second")
    runp = sub.add_parser("run", help="run one chaos scenario from the catalogue (or `random`) and write its verdict")
    runp.add_argument("scenario")
    runp.add_argument("--seed", type=int, default=None)
    runp.add_argument("--profile", choices=list(PROFILES), default="ci",
                      help="workload length and rate (ci: 20 s at 100/s; nightly; load)")
    runp.add_argument("--duration", type=float, default=None, help="workload seconds (default: the profile's)")
    runp.add_argument("--rate", type=float, default=None, help="changes per second (default: the profile's)")
    runp.add_argument("--faults", type=int, default=5, help="random: how many faults to draw")
    runp.add_argument("--variant", default="correct", help="random: the job variant (known-bad ones get found)")
    cat = sub.add_parser("catalogue", help="list the scenario catalogue: faults, expectations, cited bug reports")
    cat.add_argument("--known", action="store_true", help="only the known-bug scenarios (those citing a report)")
    cat.add_argument("--json", action="store_true", help="print the scenarios as JSON")
    repl = sub.add_parser("replay", help="run a report directory's schedule.json again on a fresh stack")
    repl.add_argument("report_dir")
    repl.add_argument("--times", type=int, default=1, help="replays (how often does it reproduce?)")
    shr = sub.add_parser("shrink", help="the smallest schedule that still shows a failing run's anomaly class")
    shr.add_argument("report_dir")
    shr.add_argument("--max-runs", type=int, default=20)
    exp = sub.add_parser("explore", help="random schedules back to back within a budget; failing ones shrunk")
    exp.add_argument("--budget", type=float, default=30.0, metavar="MINUTES")
    exp.add_argument("--faults", type=int, default=5)
    exp.add_argument("--duration", type=float, default=60.0, help="workload seconds per run")
    exp.add_argument("--rate", type=float, default=100.0)
    exp.add_argument("--variant", default="correct", help="the job variant to search (known-bad ones get found)")
    exp.add_argument("--shrink-runs", type=int, default=12, help="runs each failing schedule may spend shrinking")
    exp.add_argument("--seed", type=int, default=None)
    night = sub.add_parser("nightly", help="run the catalogue on fresh seeds into the results store and its site")
    night.add_argument("--scenarios", help="comma-separated scenario names (default: the profile's catalogue)")
    night.add_argument("--profile", choices=list(PROFILES), default="nightly")
    night.add_argument("--repeat", type=int, default=1, help="runs per scenario, each on a fresh seed")
    night.add_argument("--budget", type=float, default=None, metavar="MINUTES", help="start no run after this")
    night.add_argument("--store", default=str(NIGHTLY_DIR), help="results store directory (default: %(default)s)")
    night.add_argument("--keep-nights", type=int, default=7, help="prune passing runs' logs beyond this many sessions")
    night.add_argument("--seed", type=int, default=None, help="the session's base seed (each run's seed derives)")
    night.add_argument("--junit", help="JUnit XML path (default: STORE/junit-SESSION.xml)")
    rep = sub.add_parser("report", help="the nightly site: rewrite it, or diff two runs")
    rep_sub = rep.add_subparsers(dest="report_command", required=True)
    site = rep_sub.add_parser("site", help="rewrite index, trends and run pages from the store")
    site.add_argument("--store", default=str(NIGHTLY_DIR))
    diff = rep_sub.add_parser("diff", help="what changed between two runs (report directories or store run ids)")
    diff.add_argument("run_a")
    diff.add_argument("run_b")
    diff.add_argument("--store", default=str(NIGHTLY_DIR))
    job = sub.add_parser("job", help="operate the pipeline's Flink job on the running stack")
    job.add_argument("action", choices=["submit", "status", "cancel", "savepoint", "resume"])
    job.add_argument("--name", default="orders", help="the job's name on this stack (default: orders)")
    job.add_argument("--prefix", default="", help="lake prefix in the bucket (default: the bucket's root)")
    job.add_argument("--from", dest="start", choices=["earliest", "now"], default="earliest",
                     help="submit: read the topic from its start (default) or from now on")
    job.add_argument("--variant", default="correct", help="submit: job variant (known-bad ones prove the checker)")
    job.add_argument("--checkpoint-interval-ms", type=int, default=3000)
    job.add_argument("--parallelism", type=int, default=1)
    job.add_argument("--replace", action="store_true", help="submit: replace a job record of the same name")
    job.add_argument("--path", help="resume: checkpoint or savepoint (default: the latest retained checkpoint)")
    job.add_argument("--json", action="store_true", help="status: print JSON")
    job.add_argument("--run-dir")
    load = sub.add_parser("load", help="apply a seeded workload to the running stack's database")
    load.add_argument("--seed", type=int, default=None)
    load.add_argument("--duration", type=float, default=20.0, help="workload seconds")
    load.add_argument("--rate", type=float, default=100.0, help="operations per second")
    load.add_argument("--late-fraction", type=float, default=0.02, help="share of far-late event times")
    load.add_argument("--run-dir")
    check = sub.add_parser("check", help="judge a job's lake against the database (exit 0 only when CLEAN)")
    check.add_argument("--name", default="orders")
    check.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for the pipeline to catch up")
    check.add_argument("--json", action="store_true", help="print the verdict JSON instead of the summary")
    check.add_argument("--out", help="directory for the verdict (default: reports/)")
    check.add_argument("--run-dir")
    return p


COMMANDS = {
    "setup": cmd_setup, "up": cmd_up, "serve": cmd_serve, "down": cmd_down, "status": cmd_status,
    "logs": cmd_logs, "demo": cmd_demo, "run": cmd_run, "job": cmd_job, "load": cmd_load, "check": cmd_check,
    "nightly": cmd_nightly, "report": cmd_report, "replay": cmd_replay, "shrink": cmd_shrink,
    "explore": cmd_explore, "catalogue": cmd_catalogue,
}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    log.configure(1 if args.verbose else -1 if args.quiet else 0)
    from harness.compose import BackendError, backend_name, refuse_for_chaos

    try:
        args.backend = backend_name(args.backend)
        if args.command in ("demo", "run", "nightly", "replay", "shrink", "explore"):
            refuse_for_chaos(args.backend)
    except BackendError as exc:
        print(f"{args.command}: {exc}", file=sys.stderr)
        return 2
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    return COMMANDS[args.command](config, args)
