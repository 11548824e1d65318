"""The recovery figure: lag back within its pre-fault steady-state swing, measured from the heal."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from harness.runner import ConsumptionMonitor, ConsumptionSample, LagMonitor, LagSample, prometheus_samples


def _monitor(lags: list[tuple[float, int]]) -> LagMonitor:
    m = LagMonitor("127.0.0.1:1", "g", "t")
    m.samples = [LagSample(t, lag, 0) for t, lag in lags]
    return m


def test_recovery_is_lag_back_within_the_steady_state_swing() -> None:
    # steady state swings 0..240 (offsets committed per checkpoint), the fault at 6 s piles up lag,
    # the heal at 10 s, back under 240 at 13 s, zero only at 20 s (after the workload stopped)
    m = _monitor([(1.0, 900), (2.0, 0), (3.5, 240), (5.0, 120), (7.0, 500), (10.0, 1400), (11.0, 1600),
                  (12.0, 700), (13.0, 200), (15.0, 240), (20.0, 0)])
    assert m.baseline(until=6.0) == 240          # the start-up sample at 1 s is outside the warm-up
    assert m.recovery_after(10.0, threshold=240) == 3.0
    assert m.recovery_after(10.0) == 10.0


def test_no_recovery_when_the_lag_never_comes_back() -> None:
    m = _monitor([(2.0, 10), (5.0, 20), (10.0, 500), (12.0, 800)])
    assert m.baseline(until=6.0) == 20
    assert m.recovery_after(10.0, threshold=20) is None
    assert _monitor([]).baseline(until=6.0) is None


# --- reading back at its pre-fault rate (Flink's records-consumed), measured from the injection --------------

def _reading(points: list[tuple[float, int | None, str]]) -> ConsumptionMonitor:
    m = ConsumptionMonitor(pipeline=None, job_id=lambda: None)  # type: ignore[arg-type]
    m.samples = [ConsumptionSample(t, consumed, job) for t, consumed, job in points]
    return m


def _steady(until: float, per_s: int = 500, job: str = "j1", start: int = 0) -> list[tuple[float, int | None, str]]:
    return [(k / 2, start + int(k / 2 * per_s), job) for k in range(1, int(until * 2) + 1)]


def test_reading_rate_counts_a_restarts_reset_from_zero() -> None:
    # 500/s until 10 s; killed at 10 s: nothing read, no subtask reporting; the restarted subtask counts from 0
    samples = [*_steady(10.0), (10.5, 5000, "j1"), (11.0, None, "j1"), (14.0, None, "j1"),
               (14.5, 0, "j1"), (15.0, 100, "j1"), (15.5, 700, "j1"), (16.0, 1400, "j1"),
               (16.5, 1700, "j1"), (17.0, 1950, "j1")]
    m = _reading(samples)
    assert m.baseline_rate(until=10.0) == 500.0
    rates = dict(m.rates())
    assert rates[11.0] == 0.0            # killed: nothing read from 10.5 s on
    assert rates[15.0] == 100.0          # the reset is no negative rate: 100 read since the restart's 0
    assert rates[16.0] == 1300.0         # catching up: the backlog read at more than twice the steady rate
    back, dipped = m.back_after(10.0, 500.0, give_up_at=20.0)
    assert dipped and back == 5.5        # below half the rate from 11 s, 700/s over the second ending at 15.5


def test_reading_that_never_comes_back_has_no_figure_and_one_never_cut_is_zero() -> None:
    stalled = _reading([*_steady(10.0), *[(10.5 + k / 2, 5000, "j1") for k in range(20)]])
    assert stalled.back_after(10.0, 500.0, give_up_at=25.0) == (None, True)
    untouched = _reading(_steady(30.0))
    assert untouched.back_after(10.0, 500.0, give_up_at=25.0) == (0.0, False)


def test_a_resumed_job_counts_from_zero_too() -> None:
    # the JobManager's restart resumes the job under a new id: its counter starts anew, not below the old one
    samples = [*_steady(10.0), (10.5, None, "j1"), (13.0, 0, "j2"), (13.5, 600, "j2"), (14.0, 1200, "j2")]
    m = _reading(samples)
    rates = dict(m.rates())
    assert rates[13.0] == 0.0            # no answer from 10.5 s to 13 s: the window reaches back to 10.5 s
    assert rates[14.0] == 1200.0
    assert m.back_after(10.0, 500.0, give_up_at=20.0) == (4.0, True)   # the second ending at 14 s


_EXPOSITION = """\
# HELP flink_taskmanager_job_task_operator_KafkaSourceReader_KafkaConsumer_records_consumed_total records-consumed-total
# TYPE flink_taskmanager_job_task_operator_KafkaSourceReader_KafkaConsumer_records_consumed_total gauge
flink_taskmanager_job_task_operator_KafkaSourceReader_KafkaConsumer_records_consumed_total{job_id="J",\
task_attempt_id="a1",operator_name="Source: cdc_typed[1]",subtask_index="0",tm_id="tm-1",} TYPED
flink_taskmanager_job_task_operator_KafkaSourceReader_KafkaConsumer_records_consumed_total{job_id="J",\
task_attempt_id="b1",operator_name="Source: cdc_dim[10] \\"x\\", y",subtask_index="0",tm_id="tm-1",} DIM
flink_taskmanager_job_task_operator_KafkaSourceReader_KafkaConsumer_records_consumed_total{job_id="OTHER",\
task_attempt_id="c1",operator_name="Source: cdc_typed[1]",subtask_index="0",tm_id="tm-1",} 999.0
flink_taskmanager_Status_JVM_CPU_Load{tm_id="tm-1",} 0.5
"""


def _page(typed: str, dim: str) -> str:
    return _EXPOSITION.replace("TYPED", typed).replace("DIM", dim)


def test_prometheus_text_gives_each_readers_series_with_its_labels() -> None:
    samples = prometheus_samples(_page("120.0", "7.0"), "records_consumed_total")
    assert [(s["job_id"], s["task_attempt_id"], v) for s, v in samples] == [("J", "a1", 120.0), ("J", "b1", 7.0),
                                                                          ("OTHER", "c1", 999.0)]
    assert samples[1][0]["operator_name"] == 'Source: cdc_dim[10] \\"x\\", y'   # a quoted comma stays inside


def test_direct_reading_counts_each_series_once_across_a_taskmanager_kill() -> None:
    """The job's records from the TaskManagers' own endpoints: another job's series is not counted; a
    TaskManager that is gone adds nothing and takes nothing away; the restarted subtask (a new attempt) counts
    from zero; and the rate is the same accounting the REST reading gets."""
    pages: dict[str, str | None] = {"tm1": _page("100.0", "10.0"), "tm2": ""}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = pages.get(self.path.strip("/"))
            if body is None:
                self.send_error(503)
                return
            self.send_response(200)
            self.end_headers()
            self.wfile.write(body.encode())

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}"
        m = ConsumptionMonitor(pipeline=None, job_id=lambda: "J",  # type: ignore[arg-type]
                               metric_urls=lambda: [f"{base}/tm1", f"{base}/tm2", "http://127.0.0.1:9/gone"])
        assert m.read_direct("J") == 110
        pages["tm1"] = _page("160.0", "20.0")
        assert m.read_direct("J") == 180
        pages["tm1"] = None                                  # killed: its 180 stay counted, nothing is added
        assert m.read_direct("J") == 180
        pages["tm2"] = _page("30.0", "5.0").replace('"a1"', '"a2"').replace('"b1"', '"b2"')
        assert m.read_direct("J") == 215                     # the restarted subtasks on the survivor, from zero
        assert m.read_direct("NEVER") is None
    finally:
        server.shutdown()
