"""Small Kafka client helpers (confluent-kafka, i.e. librdkafka): offsets, lag, reading and writing raw records.

Used by the health checks, by quiescence (has the pipeline consumed everything?) and by tests that
inject records straight into the topic (duplicates, malformed messages).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

# librdkafka logs every refused connection to stderr; while a broker starts or is killed that is noise
_SILENT = logging.getLogger("cdc_chaos.rdkafka")
_SILENT.addHandler(logging.NullHandler())
_SILENT.propagate = False
_QUIET: dict[str, Any] = {"logger": _SILENT, "socket.timeout.ms": 5000}


@dataclass(frozen=True)
class Record:
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp_ms: int


def admin(bootstrap: str) -> AdminClient:
    return AdminClient({"bootstrap.servers": bootstrap, **_QUIET})


def create_topic(bootstrap: str, topic: str, partitions: int, replication: int, timeout: float = 30,
                 config: dict[str, str] | None = None) -> bool:
    """Create ``topic`` if missing; True if it was created now. Waits until its partitions have leaders."""
    client = admin(bootstrap)
    meta = client.list_topics(timeout=timeout)
    created = False
    if topic not in meta.topics:
        futures = client.create_topics([NewTopic(topic, partitions, replication, config=config or {})],
                                       operation_timeout=timeout)
        try:
            futures[topic].result(timeout)
            created = True
        except KafkaException as exc:
            if "TOPIC_ALREADY_EXISTS" not in str(exc):
                raise
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        t = client.list_topics(topic, timeout=timeout).topics.get(topic)
        if t is not None and t.error is None and len(t.partitions) == partitions and all(
                p.leader >= 0 for p in t.partitions.values()):
            return created
        time.sleep(0.2)
    raise TimeoutError(f"topic {topic} has no leader for every partition after {timeout:.0f}s")


def partition_leaders(bootstrap: str, topic: str) -> dict[int, int]:
    t = admin(bootstrap).list_topics(topic, timeout=10).topics[topic]
    return {p.id: p.leader for p in t.partitions.values()}


def _consumer(bootstrap: str, group: str | None = None, **extra: Any) -> Consumer:
    return Consumer({"bootstrap.servers": bootstrap, "group.id": group or "cdc-chaos-inspector",
                     "enable.auto.commit": False, "auto.offset.reset": "earliest",
                     "isolation.level": "read_committed", **_QUIET, **extra})


#: a reader of a whole topic fetches in large pieces (fewer round trips while Python parses)
_BULK = {"max.partition.fetch.bytes": 8 << 20, "fetch.max.bytes": 64 << 20, "queued.max.messages.kbytes": 262144}


def end_offsets(bootstrap: str, topic: str, timeout: float = 10) -> dict[int, int]:
    """The next offset to be written, per partition (the log end)."""
    c = _consumer(bootstrap)
    try:
        parts = c.list_topics(topic, timeout=timeout).topics[topic].partitions
        return {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout)[1] for p in parts}
    finally:
        c.close()


def offsets_at(bootstrap: str, topic: str, when_ms: int, timeout: float = 10) -> dict[int, int]:
    """Per partition, the first offset whose (broker) timestamp is at or after ``when_ms``; the log end when
    none is (Kafka's offsetsForTimes)."""
    c = _consumer(bootstrap)
    try:
        parts = c.list_topics(topic, timeout=timeout).topics[topic].partitions
        found = c.offsets_for_times([TopicPartition(topic, p, when_ms) for p in parts], timeout=timeout)
        out = {}
        for tp in found:
            out[tp.partition] = tp.offset if tp.offset >= 0 else \
                c.get_watermark_offsets(TopicPartition(topic, tp.partition), timeout=timeout)[1]
        return out
    finally:
        c.close()


def committed_offsets(bootstrap: str, group: str, topic: str, timeout: float = 10) -> dict[int, int]:
    """Offsets a consumer group (e.g. the Flink job, which commits on checkpoint) has committed; -1 if none."""
    c = _consumer(bootstrap, group)
    try:
        parts = c.list_topics(topic, timeout=timeout).topics[topic].partitions
        committed = c.committed([TopicPartition(topic, p) for p in parts], timeout=timeout)
        return {tp.partition: tp.offset for tp in committed}
    finally:
        c.close()


def lag(bootstrap: str, group: str, topic: str) -> dict[int, int]:
    ends = end_offsets(bootstrap, topic)
    done = committed_offsets(bootstrap, group, topic)
    return {p: max(0, ends[p] - max(0, done.get(p, -1))) for p in ends}


def iter_range(bootstrap: str, topic: str, start: dict[int, int], end: dict[int, int],
               timeout: float = 60) -> Iterator[list[Any]]:
    """Batches of the raw messages (``confluent_kafka.Message``) from ``start`` (inclusive) to ``end``
    (exclusive) per partition, each message once; for readers of millions of records (no object per record
    beyond the client's own)."""
    want = {p: end[p] for p in end if end[p] > start.get(p, 0)}
    if not want:
        return
    c = _consumer(bootstrap, **_BULK)
    try:
        c.assign([TopicPartition(topic, p, start.get(p, 0)) for p in want])
        remaining = dict(want)
        deadline = time.monotonic() + timeout
        while remaining and time.monotonic() < deadline:
            batch = []
            for msg in c.consume(10_000, timeout=0.5):
                if msg.error():
                    continue
                p, o = msg.partition(), msg.offset()
                stop = remaining.get(p)
                if stop is None:
                    continue
                if o < stop:
                    batch.append(msg)
                if o >= stop - 1:
                    del remaining[p]
            if batch:
                yield batch
        if remaining:
            raise TimeoutError(f"could not read {topic} up to {want} within {timeout:.0f}s; stuck at {remaining}")
    finally:
        c.close()


def read_range(bootstrap: str, topic: str, start: dict[int, int], end: dict[int, int],
               timeout: float = 60) -> list[Record]:
    """Every record from ``start`` (inclusive) to ``end`` (exclusive) per partition."""
    return [Record(m.partition(), m.offset(), m.key(), m.value(), m.timestamp()[1])
            for batch in iter_range(bootstrap, topic, start, end, timeout) for m in batch]


def produce(bootstrap: str, topic: str, records: list[tuple[bytes | None, bytes | None]],
            partition: int | None = None) -> None:
    p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True, **_QUIET})
    errors: list[Any] = []
    for key, value in records:
        kwargs: dict[str, Any] = {"key": key, "value": value, "on_delivery": lambda e, m: e and errors.append(e)}
        if partition is not None:
            kwargs["partition"] = partition
        p.produce(topic, **kwargs)
    remaining = p.flush(30)
    if remaining or errors:
        raise RuntimeError(f"producing to {topic} failed: {remaining} undelivered, errors {errors[:3]}")
