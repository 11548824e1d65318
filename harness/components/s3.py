"""The S3-compatible object store (MinIO) that holds the lake and Flink's checkpoints."""

from __future__ import annotations

from typing import Any

import boto3
import requests
from botocore.config import Config as BotoConfig

from harness.components.base import Component
from harness.config import StackConfig
from harness.install.minio import ensure_minio
from harness.process import ManagedProcess


class ObjectStore(Component):
    name = "s3"
    health_description = "MinIO's /minio/health/live to answer 200"

    @classmethod
    def port_names(cls, config: StackConfig) -> list[str]:
        return ["s3"]   # the console is off (MINIO_BROWSER=off): no port a health check could expect

    @property
    def port(self) -> int:
        return self.ports["s3"]

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def prepare(self) -> None:
        self._binary = ensure_minio(self.config)
        (self.dir / "data").mkdir(exist_ok=True)

    def build_processes(self) -> dict[str, ManagedProcess]:
        s3 = self.config.s3
        env = {
            "PATH": "/usr/bin:/bin", "HOME": str(self.dir),
            "MINIO_ROOT_USER": s3.access_key, "MINIO_ROOT_PASSWORD": s3.secret_key,
            "MINIO_REGION": s3.region, "MINIO_BROWSER": "off",
            # No phoning home / update checks on a machine without internet.
            "MINIO_UPDATE": "off", "MINIO_CALLHOME_ENABLE": "off",
        }
        argv = [str(self._binary), "server", str(self.dir / "data"), "--quiet",
                "--address", f"127.0.0.1:{self.port}"]
        return {"server": self.new_process("server", argv, env)}

    def healthy(self) -> bool:
        return requests.get(f"{self.endpoint}/minio/health/live", timeout=2).status_code == 200

    def after_healthy(self) -> None:
        client = self.client()
        bucket = self.config.s3.bucket
        existing = {b["Name"] for b in client.list_buckets().get("Buckets", [])}
        if bucket not in existing:
            client.create_bucket(Bucket=bucket)

    def client(self, endpoint: str | None = None) -> Any:
        """A client of this store, straight to MinIO, or through ``endpoint`` (e.g. the job's route via the gate)."""
        s3 = self.config.s3
        return boto3.client(
            "s3", endpoint_url=endpoint or self.endpoint, aws_access_key_id=s3.access_key,
            aws_secret_access_key=s3.secret_key, region_name=s3.region,
            config=BotoConfig(retries={"max_attempts": 2}, connect_timeout=3, read_timeout=30,
                              s3={"addressing_style": "path"}),
        )

    def endpoints(self) -> dict[str, Any]:
        s3 = self.config.s3
        return {"endpoint": self.endpoint, "bucket": s3.bucket, "access_key": s3.access_key,
                "secret_key": s3.secret_key, "region": s3.region}
