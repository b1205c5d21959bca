"""Table definitions shared by SQLite and PostgreSQL.

Times are UTC epoch seconds (float): portable between both stores and cheap to compare.
JSON documents are stored as text and encoded by the store, never pickled.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    text,
)

metadata = MetaData()

# BIGINT autoincrement is only a rowid alias on SQLite when spelled INTEGER.
Id = BigInteger().with_variant(Integer(), "sqlite")


def _partial_index(name: str, *columns: str, where: str) -> Index:
    """An index of only the rows ``where`` holds, on both databases."""
    return Index(name, *columns, postgresql_where=text(where), sqlite_where=text(where))


plans = Table(
    "plans",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("action", String(255), nullable=False),
    Column("label", String(500), nullable=False),
    Column("args", Text, nullable=False),
    Column("state", String(16), nullable=False),
    Column("result", String(16), nullable=False),
    Column("flow", Text),
    Column("error", Text),
    Column("parent_plan_id", String(32)),
    Column("parent_step_id", Integer),
    Column("created_at", Float, nullable=False),
    Column("started_at", Float),
    Column("ended_at", Float),
    Column("start_at", Float),
    Column("start_before", Float),
    # when the plan itself needs an executor: a delayed start or the finalize phase
    Column("wake_at", Float),
    Column("claimed_by", String(64)),
    Column("needs_finalize", Boolean, nullable=False, server_default=text("false")),
    Column("cancel_requested", Boolean, nullable=False, server_default=text("false")),
    Column("progress", Float, nullable=False, server_default=text("0")),
    Index("ix_plans_state_created", "state", "created_at"),
    Index("ix_plans_created", "created_at"),
    Index("ix_plans_parent", "parent_plan_id", "parent_step_id", "state"),
    # a fleet's hosts page by page, in host order, at any depth
    Index("ix_plans_parent_label", "parent_plan_id", "label", "id"),
    _partial_index("ix_plans_wake", "wake_at", where="wake_at IS NOT NULL"),
)

steps = Table(
    "steps",
    metadata,
    Column("plan_id", String(32), ForeignKey("plans.id", ondelete="CASCADE"), primary_key=True),
    Column("idx", Integer, primary_key=True, autoincrement=False),
    Column("parent", Integer),
    Column("action", String(255), nullable=False),
    Column("state", String(16), nullable=False),
    Column("input", Text, nullable=False),
    Column("output", Text),
    Column("data", Text),
    Column("error", Text),
    Column("has_run", Boolean, nullable=False),
    Column("has_finalize", Boolean, nullable=False),
    Column("idempotent", Boolean, nullable=False),
    Column("rescue", String(8), nullable=False),
    Column("weight", Float, nullable=False),
    Column("progress", Float, nullable=False, server_default=text("0")),
    Column("pending_deps", Integer, nullable=False),
    Column("dependents", Text, nullable=False),
    Column("ref_dependents", Text, nullable=False),
    # set exactly when the step can be claimed: due, unclaimed and with nothing to wait for
    Column("ready_at", Float),
    Column("claimed_by", String(64)),
    Column("claimed_from", String(16)),
    Column("attempts", Integer, nullable=False, server_default=text("0")),
    Column("started_at", Float),
    Column("ended_at", Float),
    Column("run_seconds", Float, nullable=False, server_default=text("0")),
    _partial_index("ix_steps_ready", "ready_at", where="ready_at IS NOT NULL"),
    _partial_index("ix_steps_claimed", "claimed_by", where="claimed_by IS NOT NULL"),
)

events = Table(
    "events",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("plan_id", String(32), ForeignKey("plans.id", ondelete="CASCADE"), nullable=False),
    Column("step_idx", Integer, nullable=False),
    Column("kind", String(16), nullable=False),
    Column("payload", Text, nullable=False),
    Column("dedupe_key", String(255), unique=True),
    Column("due_at", Float, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("consumed_at", Float),
    _partial_index("ix_events_open", "plan_id", "step_idx", "due_at", where="consumed_at IS NULL"),
)

outbox = Table(
    "outbox",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("plan_id", String(32)),
    Column("step_idx", Integer),
    Column("destination", String(255), nullable=False),
    Column("message", Text, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("published_at", Float),
    Column("attempts", Integer, nullable=False, server_default=text("0")),
    # when a failed publish may be tried again (NULL: at once)
    Column("retry_at", Float),
    _partial_index("ix_outbox_unpublished", "created_at", where="published_at IS NULL"),
)

executors = Table(
    "executors",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("host", String(255), nullable=False),
    Column("pid", Integer, nullable=False),
    Column("started_at", Float, nullable=False),
    Column("heartbeat_at", Float, nullable=False),
)

history = Table(
    "history",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("plan_id", String(32), ForeignKey("plans.id", ondelete="CASCADE"), nullable=False),
    Column("at", Float, nullable=False),
    Column("what", String(64), nullable=False),
    Column("detail", Text),
    Column("by", String(255), nullable=False),
    Index("ix_history_plan", "plan_id", "at"),
)

# The host inventory: every host ever seen, merged from discoveries and replies. Facts,
# classes and agents are those of the latest inventory reply (``inventory_at``).
hosts = Table(
    "hosts",
    metadata,
    Column("identity", String(255), primary_key=True),
    Column("facts", Text, nullable=False, server_default=text("'{}'")),
    Column("classes", Text, nullable=False, server_default=text("'[]'")),
    Column("agents", Text, nullable=False, server_default=text("'[]'")),
    Column("first_seen", Float, nullable=False),
    Column("last_seen", Float, nullable=False),
    Column("inventory_at", Float),
    Index("ix_hosts_last_seen", "last_seen"),
)

# Agents' declared interfaces (actions, inputs, outputs, read-only), as the agents sent
# them: `mcoflow rpc` and job templates check inputs against them before sending.
agent_interfaces = Table(
    "agent_interfaces",
    metadata,
    Column("agent", String(64), primary_key=True),
    Column("version", String(64), nullable=False, server_default=text("''")),
    Column("interface", Text, nullable=False),
    Column("host", String(255), nullable=False),
    Column("fetched_at", Float, nullable=False),
)

# Saved host groups: a named filter, used as ``@name`` wherever a filter is.
host_groups = Table(
    "host_groups",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("filter", Text, nullable=False),
    Column("description", Text, nullable=False, server_default=text("''")),
    Column("created_at", Float, nullable=False),
    Column("created_by", String(255), nullable=False),
)

# Recurring jobs: a job, a cron expression in a time zone, an optional end and count.
schedules = Table(
    "schedules",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("name", String(64), nullable=False, unique=True),
    Column("job", Text, nullable=False),
    Column("cron", String(255), nullable=False),
    Column("timezone", String(64), nullable=False),
    Column("end_at", Float),
    Column("max_runs", Integer),
    Column("state", String(16), nullable=False),
    Column("next_at", Float),
    Column("runs", Integer, nullable=False, server_default=text("0")),
    Column("skipped", Integer, nullable=False, server_default=text("0")),
    Column("last_at", Float),
    Column("last_plan_id", String(32)),
    Column("created_at", Float, nullable=False),
    Column("created_by", String(255), nullable=False),
    Index("ix_schedules_next_at", "next_at"),
)

# One row per occurrence a schedule fired (or skipped): its key is the claim that makes an
# occurrence run once however many executors look.
schedule_runs = Table(
    "schedule_runs",
    metadata,
    Column("schedule_id", String(32), primary_key=True),
    Column("occurrence_at", Float, primary_key=True),
    Column("plan_id", String(32)),
    Column("skipped", Integer, nullable=False, server_default=text("0")),
    Column("at", Float, nullable=False),
    # why the occurrence started no plan (its job no longer plans: a host gone, ...)
    Column("error", Text),
)
