"""The enrichment rules, in one place: the workload seeds the customer dimension with them, the Flink
job computes them in SQL (see ``flink_job.sql``), and the checker recomputes them to convict a job
that gets one wrong.  Every rule is a pure function of the change, so a replayed change enriches the same.
"""

from __future__ import annotations

from decimal import Decimal

#: order status -> status category
STATUS_CATEGORY: dict[str, str] = {
    "pending": "open",
    "paid": "open",
    "shipped": "in_flight",
    "delivered": "done",
    "cancelled": "cancelled",
    "returned": "cancelled",
}
UNKNOWN_CATEGORY = "unknown"
STATUSES = tuple(STATUS_CATEGORY)

#: the customer dimension: region and segment are functions of customer_id (seeded into `customers`)
REGIONS = ("EU", "NA", "APAC", "LATAM")
SEGMENTS = ("consumer", "smb", "enterprise")


def status_category(status: str) -> str:
    return STATUS_CATEGORY.get(status, UNKNOWN_CATEGORY)


def customer_region(customer_id: int) -> str:
    return REGIONS[customer_id % len(REGIONS)]


def customer_segment(customer_id: int) -> str:
    return SEGMENTS[customer_id % len(SEGMENTS)]


def line_total(quantity: int, unit_price: Decimal) -> Decimal:
    return (Decimal(quantity) * unit_price).quantize(Decimal("0.01"))


def sql_status_category(column: str = "status") -> str:
    """The same rule as SQL (Flink and DuckDB both accept it)."""
    whens = " ".join(f"WHEN '{s}' THEN '{c}'" for s, c in STATUS_CATEGORY.items())
    return f"CASE {column} {whens} ELSE '{UNKNOWN_CATEGORY}' END"


def sql_region(column: str = "customer_id") -> str:
    whens = " ".join(f"WHEN {i} THEN '{r}'" for i, r in enumerate(REGIONS))
    return f"CASE MOD({column}, {len(REGIONS)}) {whens} END"


def sql_segment(column: str = "customer_id") -> str:
    whens = " ".join(f"WHEN {i} THEN '{s}'" for i, s in enumerate(SEGMENTS))
    return f"CASE MOD({column}, {len(SEGMENTS)}) {whens} END"
