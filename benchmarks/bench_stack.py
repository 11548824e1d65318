"""Stack figures: set-up time (first install, if the cache is empty), warm stack-up time, resident memory.

    python -m benchmarks.bench_stack [--cold]      (--cold: install into a fresh cache dir first)

Prints one JSON line: seconds per install step, seconds to healthy per component, total stack-up time,
RSS per process and in total (idle, then after a 20 s baseline chaos run under load), and the median time of
an S3 call with an answer body (CreateMultipartUpload, then its abort) straight to MinIO and on the job's route
(Toxiproxy, then the S3 gate): what the fault path adds to every such call of the file sink and checkpoints.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import tempfile
import time
import uuid
from typing import Any

import psutil

from harness.config import load_config


def rss_mib(stack: object) -> dict[str, int]:
    out = {}
    for name, comp in stack.components.items():  # type: ignore[attr-defined]
        for member, proc in comp.processes.items():
            if proc.pid and psutil.pid_exists(proc.pid):
                p = psutil.Process(proc.pid)
                out[f"{name}/{member}"] = (p.memory_info().rss + sum(
                    c.memory_info().rss for c in p.children(recursive=True))) >> 20
    return out


def s3_call_ms(stack: Any, endpoint: str | None = None, calls: int = 30) -> float:
    """Median ms of CreateMultipartUpload + AbortMultipartUpload, straight to MinIO or through ``endpoint`` (a
    connection kept open)."""
    client, bucket = stack.s3.client(endpoint), stack.config.s3.bucket
    client.list_objects_v2(Bucket=bucket, MaxKeys=1)   # connect first
    times = []
    for _ in range(calls):
        key, t = f"bench/s3-call/{uuid.uuid4()}", time.perf_counter()
        up = client.create_multipart_upload(Bucket=bucket, Key=key)
        client.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=up["UploadId"])
        times.append((time.perf_counter() - t) * 1000)
    return round(statistics.median(times), 1)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cold", action="store_true", help="measure a first install in an empty cache dir")
    args = ap.parse_args()
    result: dict[str, object] = {}
    cold_dir = None
    if args.cold:
        cold_dir = tempfile.mkdtemp(prefix="cdc-chaos-cold-")
        os.environ["CDC_CHAOS_CACHE"] = cold_dir
    try:
        measure(result)
    finally:
        if cold_dir is not None:   # the cold cache is hundreds of MB: nothing of it stays behind
            shutil.rmtree(cold_dir, ignore_errors=True)
    print(json.dumps(result, indent=1))


def measure(result: dict[str, object]) -> None:
    from harness.install.all import install_everything
    from harness.runner import RunSpec, run
    from harness.stack import Stack

    config = load_config()
    t0 = time.monotonic()
    result["install_seconds"] = install_everything(config)
    result["install_total_seconds"] = round(time.monotonic() - t0, 1)
    with Stack.up(config, label="bench") as stack:
        result["stack_up_seconds"] = round(stack.timings["total"], 1)
        result["health_wait_seconds"] = {k: round(v, 1) for k, v in stack.timings.items()}
        result["s3_call_ms_median"] = {"direct": s3_call_ms(stack),
                                       "job_route": s3_call_ms(stack, f"http://{stack.proxy.endpoints()['s3']}")}
        idle = rss_mib(stack)
        result["rss_idle_mib"] = idle
        result["rss_idle_total_mib"] = sum(idle.values())
        res = run(stack, RunSpec(name="bench", seed=1, duration_s=20, rate=200))
        loaded = rss_mib(stack)
        result["rss_after_load_mib"] = loaded
        result["rss_after_load_total_mib"] = sum(loaded.values())
        result["bench_run_verdict"] = res.verdict.verdict


if __name__ == "__main__":
    from harness.process import exit_on_sigterm

    exit_on_sigterm()   # a stopped benchmark leaves no stack and no baseline checkout behind
    main()
