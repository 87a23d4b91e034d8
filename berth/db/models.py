"""SQLAlchemy 2 typed models; every schema change is an Alembic migration under migrations/."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    DateTime,
    Enum,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    func,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from berth.contract import ContainerState

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def _now() -> Any:
    return mapped_column(DateTime(timezone=True), server_default=func.now(), nullable=False)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Node(Base):
    """A host with a containerd and a node agent polling ``berth-node-<name>``."""

    __tablename__ = "nodes"

    name: Mapped[str] = mapped_column(String(63), primary_key=True)
    bridge: Mapped[str] = mapped_column(String(15))
    subnet: Mapped[str] = mapped_column(String(43))
    # host:port of the agent's node endpoint (berth.endpoint), refreshed with its heartbeat.
    endpoint: Mapped[str | None] = mapped_column(String(255))
    last_seen_at: Mapped[datetime] = _now()
    created_at: Mapped[datetime] = _now()


class Container(Base):
    """A container's config, host config and lifecycle state (docker's ``container.State``)."""

    __tablename__ = "containers"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    image: Mapped[str] = mapped_column(String(255))
    node: Mapped[str] = mapped_column(ForeignKey("nodes.name"), index=True)
    config: Mapped[dict[str, Any]] = mapped_column(JSONB)
    # The enum by value in a VARCHAR(16), as the migrations made it (no PostgreSQL enum type).
    state: Mapped[ContainerState] = mapped_column(
        Enum(
            ContainerState,
            native_enum=False,
            create_constraint=False,
            length=16,
            values_callable=lambda states: [state.value for state in states],
        ),
        index=True,
    )
    pid: Mapped[int | None] = mapped_column(Integer)
    exit_code: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)
    ip: Mapped[str | None] = mapped_column(String(45))
    # The workflow id of the lifecycle operation that holds the container, if any.
    operation: Mapped[str | None] = mapped_column(String(255))
    restart_count: Mapped[int] = mapped_column(Integer, server_default="0")
    # The restart manager's current back-off (docker's restartmanager timeout), 0 when reset.
    restart_backoff_ms: Mapped[int] = mapped_column(Integer, server_default="0")
    # The image's StopSignal, recorded when the container starts; None means SIGTERM.
    stop_signal: Mapped[str | None] = mapped_column(String(16))
    has_been_started_before: Mapped[bool] = mapped_column(server_default="false")
    has_been_manually_stopped: Mapped[bool] = mapped_column(server_default="false")
    created_at: Mapped[datetime] = _now()
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class ContainerHealth(Base):
    """A container's health check state (docker's ``State.Health``), kept by its node agent.

    ``pid`` is the task the status belongs to: a new task starts over at ``starting``.
    ``exec_id`` is the probe in flight, written before the exec exists, so an agent that
    restarts after a crash finds and deletes what the crashed one left in the task.
    """

    __tablename__ = "container_health"

    container_id: Mapped[str] = mapped_column(
        ForeignKey("containers.id", ondelete="CASCADE"), primary_key=True
    )
    node: Mapped[str] = mapped_column(String(63), index=True)
    pid: Mapped[int | None] = mapped_column(Integer)
    # starting | healthy | unhealthy
    status: Mapped[str] = mapped_column(String(16))
    failing_streak: Mapped[int] = mapped_column(Integer, server_default="0")
    # The last results, oldest first: start, end, exit_code, output (at most 4 KiB each).
    log: Mapped[list[dict[str, Any]]] = mapped_column(JSONB, server_default="[]")
    exec_id: Mapped[str | None] = mapped_column(String(76))
    updated_at: Mapped[datetime] = _now()


class SagaStep(Base):
    """One step of one lifecycle operation: what it did, how to undo it, how undo went."""

    __tablename__ = "saga_steps"
    __table_args__ = (UniqueConstraint("operation", "step"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    operation: Mapped[str] = mapped_column(String(255))
    container_id: Mapped[str] = mapped_column(String(64), index=True)
    step: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(24))
    handle: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default="{}")
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = _now()
    updated_at: Mapped[datetime] = _now()


class MountHolder(Base):
    """One holder of a rootfs mount; the mount exists exactly while a holder row does."""

    __tablename__ = "mount_holders"

    node: Mapped[str] = mapped_column(String(63), primary_key=True)
    target: Mapped[str] = mapped_column(String(512), primary_key=True)
    holder: Mapped[str] = mapped_column(String(255), primary_key=True)
    container_id: Mapped[str] = mapped_column(String(64), index=True)
    created_at: Mapped[datetime] = _now()


class NetworkAttachment(Base):
    """A container's network namespace and CNI attachment, written before the netns exists."""

    __tablename__ = "network_attachments"

    container_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    node: Mapped[str] = mapped_column(String(63), index=True)
    mode: Mapped[str] = mapped_column(String(16))
    netns_path: Mapped[str | None] = mapped_column(String(512))
    ip: Mapped[str | None] = mapped_column(String(45))
    created_at: Mapped[datetime] = _now()


class ContainerEvent(Base):
    """The ``docker events`` equivalent: an append-only log of what happened to containers."""

    __tablename__ = "container_events"
    __table_args__ = (Index(None, "container_id", "id"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    container_id: Mapped[str] = mapped_column(String(64))
    container_name: Mapped[str] = mapped_column(String(128))
    node: Mapped[str] = mapped_column(String(63))
    action: Mapped[str] = mapped_column(String(32))
    attributes: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default="{}")
    time: Mapped[datetime] = _now()


class FleetRun(Base):
    """One fleet restart (``fleet-restart-<name>``), across its continue-as-new runs."""

    __tablename__ = "fleet_runs"

    # The workflow's first run id: stable across continue-as-new.
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(100), index=True)
    status: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(Text)
    spec: Mapped[dict[str, Any]] = mapped_column(JSONB)
    total: Mapped[int] = mapped_column(Integer, server_default="0")
    created_at: Mapped[datetime] = _now()
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class FleetItem(Base):
    """One container of a fleet restart: selected at the run's start, then its outcome."""

    __tablename__ = "fleet_items"

    run_id: Mapped[str] = mapped_column(ForeignKey("fleet_runs.id"), primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, primary_key=True)
    container_id: Mapped[str] = mapped_column(String(64))
    container_name: Mapped[str] = mapped_column(String(128))
    node: Mapped[str] = mapped_column(String(63))
    # pending | restarted | failed | busy | cancelled
    outcome: Mapped[str] = mapped_column(String(16), server_default="pending")
    error: Mapped[str | None] = mapped_column(Text)
    pid: Mapped[int | None] = mapped_column(Integer)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class PortMapping(Base):
    """A host port published by a container on its node (CNI ``portmap``), claimed at start.

    One host port per protocol per node (whatever the host IP), so two claims cannot collide
    even when they race; recorded before the mapping is made, released after it is removed.
    """

    __tablename__ = "port_mappings"

    node: Mapped[str] = mapped_column(String(63), primary_key=True)
    protocol: Mapped[str] = mapped_column(String(3), primary_key=True)
    host_port: Mapped[int] = mapped_column(Integer, primary_key=True)
    # "" publishes on every address of the node.
    host_ip: Mapped[str] = mapped_column(String(15), server_default="")
    container_id: Mapped[str] = mapped_column(String(64), index=True)
    container_port: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = _now()


class Volume(Base):
    """A named volume of one node (``docker volume create``; ``run -v name:/path`` makes one).

    The row is the intent: written before the node makes the volume's directory and removed
    after it deletes it, so the leak checker can tell a leftover directory from a pending one.
    """

    __tablename__ = "volumes"

    node: Mapped[str] = mapped_column(String(63), primary_key=True)
    name: Mapped[str] = mapped_column(String(255), primary_key=True)
    labels: Mapped[dict[str, str]] = mapped_column(JSONB, default=dict, server_default="{}")
    created_at: Mapped[datetime] = _now()
