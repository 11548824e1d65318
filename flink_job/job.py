"""Submit the pipeline to a Flink cluster with PyFlink's Table API.

    python -m flink_job.job '<JobConfig as JSON>' --rest 127.0.0.1:8081 [--restore s3://.../chk-12]
    python -m flink_job.job --serve

Prints one JSON line ``{"job_id": ...}``.  The job is pure SQL, so the TaskManagers need no Python: this
process only plans the job (in PyFlink's gateway JVM, with the connector jars of FLINK_HOME/lib) and
submits it, then exits while the job keeps running on the cluster.

``--serve`` plans one job per line of standard input (``{"config": ..., "rest": ..., "restore": ...,
"checkpoint_dir": ...}``) and answers each with one line ``SERVE_TAG {"job_id": ...}`` or ``SERVE_TAG
{"error": ...}``, in one JVM: only the first submission pays the JVM's start and the planner's warm-up.  It
exits at the end of its input.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import traceback
from typing import Any

from flink_job.sql import JobConfig, statements, table_config


def build_and_submit(cfg: JobConfig, rest: str, restore: str | None, checkpoint_dir: str | None) -> str:
    from pyflink.common import Configuration
    from pyflink.datastream import StreamExecutionEnvironment
    from pyflink.table import EnvironmentSettings, Schema, StreamTableEnvironment, Table

    host, port = rest.rsplit(":", 1)
    conf = Configuration()
    settings: dict[str, str] = {
        "execution.target": "remote", "rest.address": host, "rest.port": port, "jobmanager.rpc.address": host,
        **table_config(cfg),
    }
    if checkpoint_dir:
        settings["execution.checkpointing.dir"] = checkpoint_dir
        settings["execution.checkpointing.savepoint-dir"] = checkpoint_dir.rstrip("/") + "/savepoints"
    if restore:
        settings["execution.state-recovery.path"] = restore
        settings["execution.state-recovery.ignore-unclaimed-state"] = "false"
    for k, v in settings.items():
        conf.set_string(k, v)
    stream_env = StreamExecutionEnvironment.get_execution_environment(conf)
    env = StreamTableEnvironment.create(
        stream_env, EnvironmentSettings.new_instance().in_streaming_mode().with_configuration(conf).build())
    for k, v in settings.items():   # table options must also be in the table config
        env.get_config().set(k, v)
    _reset_node_ids(env)
    plan = statements(cfg)
    for stmt in plan.ddl:
        env.execute_sql(stmt)
    # the change of clocks: log clock -> commit time.  Pure JVM operators (no Python function), so the
    # TaskManagers still need no Python; rebalance so every watermark assigner sees the ticks.  At parallelism 1
    # there is one assigner: forward, and the conversion back chains to the conversion out (one exchange of
    # every row less; operator ids come from plan nodes, so state still maps across a rescale)
    r = plan.restamp
    rows = env.to_data_stream(env.from_path(r.source))
    if cfg.parallelism > 1:
        rows = rows.rebalance()
    schema = Schema.new_builder().column_by_expression("commit_time", r.commit_time) \
        .watermark("commit_time", r.watermark).build()
    # the Java call itself: PyFlink's wrapper first configures Python operators by reflection, which Java 17
    # refuses without --add-opens, and there is no Python operator here to configure
    env.create_temporary_view(r.target, Table(env._j_tenv.fromDataStream(rows._j_data_stream, schema._j_schema),
                                              env))
    statement_set = env.create_statement_set()
    for stmt in plan.inserts:
        statement_set.add_insert_sql(stmt)
    result = statement_set.execute()
    client = result.get_job_client()
    if client is None:
        raise RuntimeError("the statement set produced no job")
    return str(client.get_job_id())


def _reset_node_ids(env: Any) -> None:
    """Number the planner's nodes from 1 again.  Operator ids (``table.exec.uid.generation: ALWAYS``) are
    ``<node id>_<operator>``, and the planner counts nodes for the life of its JVM: without this, the same job
    planned a second time by the long-lived planner (a resume, a rescale) would get new ids and could not map
    its checkpointed state.  The counter is static in the planner's own class loader, hence the reflection."""
    from pyflink.java_gateway import get_gateway

    gateway = get_gateway()
    loader = env._j_tenv.getPlanner().getClass().getClassLoader()
    context = loader.loadClass("org.apache.flink.table.planner.plan.nodes.exec.ExecNodeContext")
    context.getMethod("resetIdCounter", gateway.new_array(gateway.jvm.Class, 0)) \
        .invoke(None, gateway.new_array(gateway.jvm.Object, 0))


#: marks the planner's answers on standard output (the JVM may print there too)
SERVE_TAG = "@@cdc-chaos-planner"


def _drain_gateway_stderr() -> None:
    """PyFlink starts its gateway JVM with stderr on a pipe that nobody reads; a long-lived planner would block
    once the JVM had written 64 KiB there.  Copy it to this process's stderr instead."""
    import pyflink.java_gateway as java_gateway

    launch = java_gateway.launch_gateway_server_process

    def launch_and_drain(env: Any, args: Any) -> Any:
        proc = launch(env, args)

        def copy() -> None:
            for line in proc.stderr:
                sys.stderr.buffer.write(line)
                sys.stderr.flush()

        threading.Thread(target=copy, daemon=True, name="gateway-stderr").start()
        return proc

    java_gateway.launch_gateway_server_process = launch_and_drain


def serve() -> int:
    _drain_gateway_stderr()
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            req = json.loads(line)
            job_id = build_and_submit(JobConfig.from_dict(req["config"]), req["rest"], req.get("restore"),
                                      req.get("checkpoint_dir"))
            answer: dict[str, Any] = {"job_id": job_id}
        except Exception as exc:  # noqa: BLE001 - the caller gets the error, the planner stays up
            traceback.print_exc(file=sys.stderr)
            answer = {"error": f"{type(exc).__name__}: {exc}"[-6000:]}
        print(f"{SERVE_TAG} {json.dumps(answer)}", flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    if (sys.argv[1:] if argv is None else argv) == ["--serve"]:
        return serve()
    p = argparse.ArgumentParser(prog="flink_job.job")
    p.add_argument("config", help="JobConfig as JSON")
    p.add_argument("--rest", required=True, help="JobManager REST address host:port")
    p.add_argument("--restore", help="checkpoint or savepoint path to resume from")
    p.add_argument("--checkpoint-dir", help="where this job's checkpoints go (retained on cancel)")
    args = p.parse_args(argv)
    cfg = JobConfig.from_dict(json.loads(args.config))
    job_id = build_and_submit(cfg, args.rest, args.restore, args.checkpoint_dir)
    print(json.dumps({"job_id": job_id}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
