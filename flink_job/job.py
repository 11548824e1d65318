"""Submit the pipeline to a Flink cluster with PyFlink's Table API.

    python -m flink_job.job '<JobConfig as JSON>' --rest 127.0.0.1:8081 [--restore s3://.../chk-12]

Prints one JSON line ``{"job_id": ...}``.  The job is pure SQL, so the TaskManagers need no Python: this
process only plans the job (in PyFlink's gateway JVM, with the connector jars of FLINK_HOME/lib) and
submits it, then exits while the job keeps running on the cluster.
"""

from __future__ import annotations

import argparse
import json
import sys

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
    plan = statements(cfg)
    for stmt in plan.ddl:
        env.execute_sql(stmt)
    # the change of clocks: log clock -> commit time.  Pure JVM operators (no Python function), so the
    # TaskManagers still need no Python; rebalance so every watermark assigner sees the ticks
    r = plan.restamp
    rows = env.to_data_stream(env.from_path(r.source)).rebalance()
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


def main(argv: list[str] | None = None) -> int:
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
