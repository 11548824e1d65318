"""The S3 gate on a real MinIO and Toxiproxy: S3 calls pass through it unchanged (SigV4 included, multipart
too), its faults answer exactly the operations asked for, and it counts what it did."""

from __future__ import annotations

import socket
import threading
import uuid
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from typing import Any

import boto3
import pytest
from botocore.config import Config as BotoConfig
from botocore.exceptions import ClientError

from harness.config import StackConfig
from harness.s3gate import Gate, make_handler, s3_operation
from harness.stack import Stack


@pytest.fixture(scope="module")
def store(stack_config: StackConfig) -> Iterator[Stack]:
    with Stack.up(stack_config, label="s3gate", components=["proxy", "s3"]) as stack:
        yield stack


def _client(stack: Stack) -> Any:
    """A client on the job's route: Toxiproxy's s3 listener, which forwards to the gate, then MinIO."""
    s3 = stack.config.s3
    return boto3.client("s3", endpoint_url=f"http://{stack.proxy.endpoints()['s3']}", aws_access_key_id=s3.access_key,
                        aws_secret_access_key=s3.secret_key, region_name=s3.region,
                        config=BotoConfig(retries={"total_max_attempts": 1, "mode": "standard"},
                                          s3={"addressing_style": "path"}))


def _multipart(client: Any, bucket: str, key: str) -> dict[str, Any]:
    up = client.create_multipart_upload(Bucket=bucket, Key=key)
    part = client.upload_part(Bucket=bucket, Key=key, UploadId=up["UploadId"], PartNumber=1, Body=b"x" * (5 << 20))
    return client.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=up["UploadId"],
                                            MultipartUpload={"Parts": [{"ETag": part["ETag"], "PartNumber": 1}]})


def test_requests_pass_through_unchanged(store: Stack) -> None:
    client, bucket, key = _client(store), store.config.s3.bucket, f"gate/{uuid.uuid4()}"
    client.put_object(Bucket=bucket, Key=key, Body=b"hello")
    assert client.get_object(Bucket=bucket, Key=key)["Body"].read() == b"hello"
    _multipart(client, bucket, key + "-mp")
    assert client.head_object(Bucket=bucket, Key=key + "-mp")["ContentLength"] == 5 << 20
    ops = store.proxy.gate_stats()["ops"]
    for op in ("PutObject", "GetObject", "CreateMultipartUpload", "UploadPart", "CompleteMultipartUpload",
               "HeadObject"):
        assert ops[op]["requests"] >= 1 and ops[op]["injected"] == 0, (op, ops)


def test_slowdown_and_failed_completion_hit_only_their_operations(store: Stack) -> None:
    client, bucket = _client(store), store.config.s3.bucket
    store.proxy.gate_fault("slowdown", ops=["PutObject"])
    try:
        with pytest.raises(ClientError) as err:
            client.put_object(Bucket=bucket, Key=f"gate/{uuid.uuid4()}", Body=b"x")
        assert err.value.response["Error"]["Code"] == "SlowDown"
        assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503
        client.list_objects_v2(Bucket=bucket, Prefix="gate/")            # other operations still pass
        store.proxy.gate_fault("fail", ops=["CompleteMultipartUpload"])
        with pytest.raises(ClientError) as err:
            _multipart(client, bucket, f"gate/{uuid.uuid4()}")
        assert err.value.response["Error"]["Code"] == "InternalError"
    finally:
        store.proxy.gate_clear()
    stats = store.proxy.gate_stats()
    assert stats["fault"] is None
    assert stats["ops"]["PutObject"]["injected"] == 1 and stats["ops"]["CompleteMultipartUpload"]["injected"] == 1
    assert stats["ops"]["UploadPart"]["injected"] == 0
    client.put_object(Bucket=bucket, Key=f"gate/{uuid.uuid4()}", Body=b"x")   # healed


def test_a_killed_gate_comes_back_with_the_stack_heal(store: Stack) -> None:
    store.proxy.kill("s3gate")
    assert "proxy/s3gate" in store.heal()
    _client(store).put_object(Bucket=store.config.s3.bucket, Key=f"gate/{uuid.uuid4()}", Body=b"x")


def test_the_gate_answers_without_nagle(store: Stack) -> None:
    """An answer leaves in two writes (headers, body); with Nagle on, the body waited for the client's delayed ACK
    (40 ms on Linux), and every S3 call with an answer body took ~45 ms instead of ~4 on the job's route.  The
    gate's own handler, on a real MinIO: the socket it answers on has TCP_NODELAY, and the call succeeds."""
    nodelay: list[int] = []

    class Probe(make_handler(Gate(("127.0.0.1", store.ports["s3"]), None))):  # type: ignore[misc]
        def setup(self) -> None:
            super().setup()
            nodelay.append(self.connection.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))

    server = ThreadingHTTPServer(("127.0.0.1", 0), Probe)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        client, bucket = store.s3.client(f"http://127.0.0.1:{server.server_address[1]}"), store.config.s3.bucket
        key = f"gate/{uuid.uuid4()}"
        up = client.create_multipart_upload(Bucket=bucket, Key=key)   # an answer with a body
        client.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=up["UploadId"])
    finally:
        server.shutdown()
        server.server_close()
    assert nodelay and all(nodelay), nodelay


@pytest.mark.parametrize(("method", "path", "op"), [
    ("PUT", "/lake/a/b.parquet", "PutObject"), ("PUT", "/lake/a?partNumber=2&uploadId=u", "UploadPart"),
    ("POST", "/lake/a?uploads", "CreateMultipartUpload"), ("POST", "/lake/a?uploadId=u", "CompleteMultipartUpload"),
    ("DELETE", "/lake/a?uploadId=u", "AbortMultipartUpload"), ("POST", "/lake?delete", "DeleteObjects"),
    ("GET", "/lake?list-type=2&prefix=x", "ListObjects"), ("GET", "/lake/a", "GetObject"),
    ("HEAD", "/lake/a", "HeadObject"), ("HEAD", "/lake", "HeadBucket"), ("DELETE", "/lake/a", "DeleteObject"),
])
def test_operations_are_named_from_method_and_query(method: str, path: str, op: str) -> None:
    assert s3_operation(method, path) == op
