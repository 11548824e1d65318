"""The job and check CLI on a running stack, as a user drives it: submit, load, status, check (CLEAN), cancel,
more load, resume from the latest retained checkpoint, check (CLEAN) — then a committed file removed from
the lake, and `check` must exit 1 naming LOST."""

from __future__ import annotations

import json

import pytest

from harness.cli import main
from harness.lake import LakeReader
from harness.pipeline import JobRecord
from harness.stack import Stack


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    return code, capsys.readouterr().out


def test_job_load_check_resume_and_conviction(stack: Stack, seed: int, capsys: pytest.CaptureFixture[str]) -> None:
    stack.heal()
    rd = ["--run-dir", str(stack.run.path)]
    name = f"cli-{seed}"
    code, out = cli(capsys, "job", "submit", "--name", name, "--prefix", f"cli/{name}", "--from", "now",
                    "--replace", *rd)
    assert code == 0, out
    assert json.loads(out)["lake"].endswith(f"/cli/{name}")
    assert cli(capsys, "load", "--seed", str(seed), "--duration", "6", "--rate", "60", *rd)[0] == 0
    code, out = cli(capsys, "job", "status", "--name", name, "--json", *rd)
    assert code == 0 and json.loads(out)["state"] == "RUNNING", out
    code, out = cli(capsys, "check", "--name", name, "--json", *rd)
    first = json.loads(out)
    assert code == 0 and first["verdict"] == "CLEAN" and first["counts"]["truth_changes"] > 200, out

    assert cli(capsys, "job", "cancel", "--name", name, *rd)[0] == 0
    assert cli(capsys, "load", "--seed", str(seed + 1), "--duration", "4", "--rate", "60", *rd)[0] == 0
    code, out = cli(capsys, "job", "resume", "--name", name, *rd)
    assert code == 0 and "chk-" in json.loads(out)["restored_from"], out
    code, out = cli(capsys, "check", "--name", name, "--json", *rd)
    second = json.loads(out)
    assert code == 0 and second["verdict"] == "CLEAN", out
    assert second["counts"]["truth_changes"] > first["counts"]["truth_changes"]

    # break the lake: one committed data file gone -> exit 1, LOST
    record = JobRecord.load(stack.run.path, name)
    reader = LakeReader.for_s3(stack.s3.endpoints(), record.prefix)
    victim = next(f for f in reader.list_files() if f.kind == "data" and f.table == "orders")
    bucket, key = victim.path.split("/", 1)
    stack.s3.client().delete_object(Bucket=bucket, Key=key)
    code, out = cli(capsys, "check", "--name", name, "--json", "--timeout", "30", *rd)
    broken = json.loads(out)
    assert code == 1 and broken["anomalies"]["LOST"]["count"] > 0, out
    assert cli(capsys, "job", "cancel", "--name", name, *rd)[0] == 0


def test_check_names_an_unknown_job(stack: Stack, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["check", "--name", "no-such-job", "--run-dir", str(stack.run.path)])
    assert code == 2
    assert "no job named 'no-such-job'" in capsys.readouterr().err


def test_status_exits_0_on_a_healthy_stack(stack: Stack, capsys: pytest.CaptureFixture[str]) -> None:
    """Scripts gate on `status`: every port it lists listens on a healthy stack, and the JSON is versioned."""
    stack.heal()
    code, out = cli(capsys, "status", "--json", "--run-dir", str(stack.run.path))
    status = json.loads(out)
    assert code == 0 and status["healthy"] and status["schema_version"] == 1, out
    assert all(status["listening"].values()) and set(status["listening"]) == set(status["ports"]), out
