"""``FleetRestart``: restart a selection of containers with the controls of a rolling update.

The selection is snapshotted into ``fleet_items`` by the first run and paged from there, so the
input stays small at any fleet size. Each item is that container's own lifecycle operation:
``ContainerRestartOnNode`` as a child on the item's node queue, with the id
``container-restart-<id>``, so a container another operation holds is reported ``busy`` and
never restarted twice. Limits: ``max_parallel`` overall and per node; a canary batch first; a
health gate; a failure budget that pauses or aborts; batches with a delay between them.

Control: the updates ``pause``, ``resume`` and ``cancel`` (a Temporal cancel acts as ``cancel``:
in-flight restarts finish or unwind, nothing new starts), the query ``progress``. The phase is the
search attribute ``SagaPhase`` and the progress line the current details in the Web UI. After
``continue_as_new_after`` items the run drains and continues as new; its counters come back from
PostgreSQL. A watchdog fails the items of a node whose agent leaves them unpicked for
``node_wait`` seconds, and asks their children to cancel (they unwind if the agent returns).

The run's record is ``fleet_runs`` row ``first_execution_run_id`` (set by Temporal, the same
across continue-as-new), so no input names it. The state carried over continue-as-new
(``carry``: paused, cancelled, acknowledged failures, canary checked) is accepted only by a run
that Temporal continued as new (:func:`carry_allowed`); a client's ``carry`` is refused.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass
from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.workflow import ChildWorkflowCancellationType, ParentClosePolicy

with workflow.unsafe.imports_passed_through():
    from berth.contract import (
        ContainerRestartInput,
        FleetCarry,
        FleetCounts,
        FleetProgress,
        FleetRestartInput,
    )
    from berth.errors import BerthError, InvalidParameter, as_berth_error
    from berth.steps import (
        SAGA_PHASE,
        BeginFleetInput,
        ContainerHealthInput,
        ContainerHealthOutput,
        FleetItemRef,
        FleetStatusInput,
        FleetTally,
        HealthInput,
        NextItemsInput,
        NodeRestartInput,
        RecordItemInput,
        StalledInput,
        container_attributes,
        node_task_queue,
        restart_workflow_id,
    )
    from berth.workflows import steps
    from berth.workflows.container_restart import ContainerRestartOnNode
    from berth.workflows.metrics import record_fleet_item
    from berth.workflows.routing import set_outcome
    from berth.workflows.saga import failure_message
    from berth.workflows.steps import run_step

PAGE_SIZE = 200
KEPT_ERRORS = 10


@dataclass
class InFlight:
    """One item being restarted (and health-checked) by this run."""

    ref: FleetItemRef
    started: datetime
    child_id: str
    task: asyncio.Task[None] | None = None
    stalled: bool = False


def carry_allowed(info: workflow.Info) -> bool:
    """Whether this run was continued as new by the workflow itself (Temporal sets all three:
    a retry has ``attempt`` > 1, a cron run a schedule; a client's first run has no
    ``continued_run_id``)."""
    return info.continued_run_id is not None and info.attempt == 1 and not info.cron_schedule


def _empty_counts() -> dict[str, int]:
    return {"restarted": 0, "failed": 0, "busy": 0, "pending": 0}


@workflow.defn(name="FleetRestart", failure_exception_types=[BerthError])
class FleetRestart:
    """Restart the selected containers, a bounded number at a time, per node and overall."""

    @workflow.init
    def __init__(self, request: FleetRestartInput) -> None:
        self._request = request
        info = workflow.info()
        self._run_id = info.first_execution_run_id
        self._forged_carry = request.carry is not None and not carry_allowed(info)
        carry = FleetCarry() if request.carry is None or self._forged_carry else request.carry
        self._carry = carry
        self._paused = carry.paused
        self._reason = carry.paused_reason
        self._cancelled = carry.cancelled
        self._acknowledged = carry.acknowledged_failures
        self._canary_checked = carry.canary_checked or request.canary == 0
        self._aborted = False
        self._status = "starting"
        self._nodes: dict[str, dict[str, int]] = {}
        self._errors: deque[str] = deque(maxlen=KEPT_ERRORS)
        self._in_flight: dict[int, InFlight] = {}
        self._buffer: list[FleetItemRef] = []
        self._cursor = 0
        self._exhausted = False
        self._finished_here = 0
        self._changed = False
        # Status records started from synchronous code; awaited before the final one.
        self._records: list[asyncio.Task[None]] = []

    @workflow.run
    async def run(self, request: FleetRestartInput) -> FleetProgress:
        if self._forged_carry:
            raise InvalidParameter(
                "carry: set only by a fleet restart continuing as new, never by a caller"
            )
        try:
            tally = await self._begin(request)
        except Exception as err:
            raise as_berth_error(err) from None
        for node, outcomes in tally.nodes.items():
            counts = self._nodes.setdefault(node, _empty_counts())
            for outcome, count in outcomes.items():
                key = "pending" if outcome not in counts else outcome
                counts[key] += count
        self._errors.extend(tally.errors)
        await self._set_status("paused" if self._paused else "running", self._reason)
        watchdog = asyncio.create_task(self._watch_nodes())
        try:
            await self._drive()
        finally:
            watchdog.cancel()
        await asyncio.gather(*self._records)
        if self._draining and not self._done:
            workflow.continue_as_new(request.model_copy(update={"carry": self._next_carry()}))
        final = "aborted" if self._aborted else "cancelled" if self._cancelled else "completed"
        await self._set_status(final, self._reason, finished=True)
        set_outcome(final)
        return self.progress()

    async def _begin(self, request: FleetRestartInput) -> FleetTally:
        return await run_step(
            steps.BEGIN_FLEET_RUN,
            BeginFleetInput(
                run_id=self._run_id,
                name=request.name,
                selector=request.selector,
                spec=request.model_dump(mode="json", exclude={"carry"}),
            ),
            f"select the containers of fleet restart {request.name}",
        )

    # -- the scheduler -------------------------------------------------------------------------

    @property
    def _done(self) -> bool:
        return not self._in_flight and (
            self._aborted or self._cancelled or (self._exhausted and not self._buffer)
        )

    @property
    def _draining(self) -> bool:
        return self._finished_here >= self._request.continue_as_new_after or (
            workflow.info().is_continue_as_new_suggested()
        )

    async def _drive(self) -> None:
        batch_mode = self._request.batch_delay > 0
        while not self._done:
            if self._draining and not self._in_flight:
                return
            await self._refill()
            if batch_mode and not self._in_flight and self._started_any and self._may_start():
                await self._sleep_between_batches()
            if self._may_start() and not (batch_mode and self._in_flight):
                self._start_what_fits()
            if self._done:
                return
            self._changed = False
            try:
                await workflow.wait_condition(lambda: self._changed)
            except asyncio.CancelledError:
                # A Temporal cancel: stop starting, let what runs finish (as the update does).
                self._cancel_requested()

    @property
    def _started_any(self) -> bool:
        return self._finished_here > 0

    async def _sleep_between_batches(self) -> None:
        try:
            await workflow.sleep(self._request.batch_delay)
        except asyncio.CancelledError:
            self._cancel_requested()

    def _may_start(self) -> bool:
        return not (self._paused or self._cancelled or self._aborted or self._draining)

    async def _refill(self) -> None:
        if self._exhausted or len(self._buffer) >= PAGE_SIZE // 2:
            return
        page = await run_step(
            steps.NEXT_FLEET_ITEMS,
            NextItemsInput(run_id=self._run_id, after_seq=self._cursor, limit=PAGE_SIZE),
            f"page the containers of fleet restart {self._request.name}",
        )
        self._buffer.extend(page.items)
        if page.items:
            self._cursor = page.items[-1].seq
        self._exhausted = len(page.items) < PAGE_SIZE

    def _start_what_fits(self) -> None:
        request = self._request
        per_node = request.max_parallel_per_node or request.max_parallel
        slots = request.max_parallel - len(self._in_flight)
        if not self._canary_checked:
            slots = min(slots, request.canary - self._finished_total() - len(self._in_flight))
        running: dict[str, int] = {}
        for item in self._in_flight.values():
            running[item.ref.node] = running.get(item.ref.node, 0) + 1
        kept = []
        for ref in self._buffer:
            if slots <= 0 or running.get(ref.node, 0) >= per_node:
                kept.append(ref)
                continue
            running[ref.node] = running.get(ref.node, 0) + 1
            slots -= 1
            self._launch(ref)
        self._buffer = kept

    def _finished_total(self) -> int:
        return sum(c["restarted"] + c["failed"] + c["busy"] for c in self._nodes.values())

    def _launch(self, ref: FleetItemRef) -> None:
        item = InFlight(
            ref=ref, started=workflow.now(), child_id=restart_workflow_id(ref.container_id)
        )
        self._in_flight[ref.seq] = item
        self._count(ref.node, "pending", -1)
        item.task = asyncio.create_task(self._restart(item))

    # -- one item --------------------------------------------------------------------------------

    async def _restart(self, item: InFlight) -> None:
        ref, request = item.ref, self._request
        outcome, error, pid = "failed", None, None
        try:
            result = await workflow.execute_child_workflow(
                ContainerRestartOnNode.run,
                NodeRestartInput(
                    request=ContainerRestartInput(
                        container=ref.container_id, timeout=request.stop_timeout
                    )
                ),
                id=item.child_id,
                task_queue=node_task_queue(ref.node),
                # A stalled child is asked to cancel and left to unwind when its agent returns.
                cancellation_type=ChildWorkflowCancellationType.TRY_CANCEL,
                parent_close_policy=ParentClosePolicy.ABANDON,
                search_attributes=container_attributes(ref.container_id, ref.name, ref.node),
                static_summary=f"restart {ref.name} on {ref.node} for fleet {request.name}",
            )
            pid = result.pid
            outcome, error = await self._health_gate(item, result.pid)
        except WorkflowAlreadyStartedError:
            outcome, error = "busy", f"container {ref.name} is busy: a restart is in progress"
        except (asyncio.CancelledError, Exception) as err:
            if item.stalled:
                error = (
                    f"node {ref.node}: no agent picked up the restart of {ref.name} "
                    f"within {request.node_wait:g}s (is the node agent down?)"
                )
            elif isinstance(err, asyncio.CancelledError):
                raise
            else:
                outcome, error = self._classify(err)
        await run_step(
            steps.RECORD_FLEET_ITEM,
            RecordItemInput(
                run_id=self._run_id,
                seq=ref.seq,
                outcome=outcome,
                error=error,
                pid=pid,
                started_at=item.started,
                finished_at=workflow.now(),
            ),
            f"record {outcome} restart of {ref.name}",
        )
        self._finish(item, outcome, error)

    @staticmethod
    def _classify(err: BaseException) -> tuple[str, str]:
        """A ``Conflict`` means another operation holds the container: busy, not failed."""
        typed = as_berth_error(err)
        outcome = "busy" if typed.type == "Conflict" else "failed"
        return outcome, typed.message or failure_message(err)

    async def _health_gate(self, item: InFlight, pid: int) -> tuple[str, str | None]:
        request = self._request
        if item.ref.health_check:
            checked = await self._health_of(item, pid)
            if checked.has_check:
                return await self._wait_healthy(item, pid, checked)
        if request.min_healthy <= 0:
            return "restarted", None
        await workflow.sleep(request.min_healthy)
        health = await run_step(
            steps.CHECK_HEALTHY,
            HealthInput(container_id=item.ref.container_id, pid=pid),
            f"health check of {item.ref.name}",
        )
        if not health.healthy:
            return "failed", f"{item.ref.name}: {health.reason}"
        took = (workflow.now() - item.started).total_seconds()
        if took > request.healthy_deadline:
            return "failed", (
                f"{item.ref.name}: healthy only after {took:.1f}s, past healthy_deadline "
                f"{request.healthy_deadline:g}s"
            )
        return "restarted", None

    async def _health_of(self, item: InFlight, pid: int) -> ContainerHealthOutput:
        return await run_step(
            steps.CONTAINER_HEALTH,
            ContainerHealthInput(container_id=item.ref.container_id, pid=pid),
            f"health status of {item.ref.name}",
        )

    async def _wait_healthy(
        self, item: InFlight, pid: int, health: ContainerHealthOutput
    ) -> tuple[str, str | None]:
        """With a health check: healthy within ``healthy_deadline`` of the restart, else failed."""
        name, deadline = item.ref.name, self._request.healthy_deadline
        # The status changes only when a probe ends: poll about twice per interval.
        poll = min(max(health.interval / 2, 0.5), 5.0)
        while True:
            if not health.running:
                return "failed", f"{name}: {health.reason}"
            if health.status == "healthy":
                return "restarted", None
            if health.status == "unhealthy":
                return "failed", (
                    f"{name}: unhealthy after {health.failing_streak} failed health checks: "
                    f"{health.last_output.strip()[:200]}"
                )
            left = deadline - (workflow.now() - item.started).total_seconds()
            if left <= 0:
                return "failed", f"{name}: not healthy within healthy_deadline {deadline:g}s"
            await workflow.sleep(min(poll, left))
            health = await self._health_of(item, pid)

    def _finish(self, item: InFlight, outcome: str, error: str | None) -> None:
        del self._in_flight[item.ref.seq]
        self._finished_here += 1
        self._count(item.ref.node, outcome, 1)
        record_fleet_item(self._request.name, item.ref.node, outcome)
        if error and outcome == "failed":
            self._errors.append(error)
        self._check_budget()
        if not self._canary_checked and not self._in_flight:
            self._check_canary()
        workflow.set_current_details(self._summary())
        self._changed = True

    def _count(self, node: str, outcome: str, delta: int) -> None:
        self._nodes.setdefault(node, _empty_counts())[outcome] += delta

    # -- failure budget, canary ----------------------------------------------------------------

    def _allowed_failures(self) -> int:
        request = self._request
        if request.max_failures is not None:
            return request.max_failures
        if request.max_failure_ratio is not None:
            return int(request.max_failure_ratio * self._total())
        return 0

    def _check_budget(self) -> None:
        failed = self._sum("failed") - self._acknowledged
        if failed > self._allowed_failures() and not (self._paused or self._aborted):
            self._breach(
                f"failure budget exceeded: {failed} failed, {self._allowed_failures()} allowed"
            )

    def _check_canary(self) -> None:
        started = self._finished_total()
        if started < min(self._request.canary, self._total()) and not self._exhausted_all():
            return
        self._canary_checked = True
        failed = self._sum("failed") - self._acknowledged
        if failed > 0 and not (self._paused or self._aborted):
            self._breach(f"canary failed: {failed} of {started} canary restarts failed")

    def _exhausted_all(self) -> bool:
        return self._sum("pending") == 0

    def _breach(self, reason: str) -> None:
        self._reason = reason
        if self._request.on_failure == "abort":
            self._aborted = True
            self._status_later("aborting")
        else:
            self._paused = True
            self._status_later("paused")

    # -- control -------------------------------------------------------------------------------

    @workflow.update
    async def pause(self) -> FleetProgress:
        """Start nothing new until ``resume``; what runs finishes."""
        if not self._paused and self._status_open():
            self._paused, self._reason = True, "paused by request"
            await self._set_status("paused", self._reason)
        return self.progress()

    @workflow.update
    async def resume(self) -> FleetProgress:
        """Go on after a pause (the failures so far count as accepted by the operator)."""
        if self._paused and self._status_open():
            self._paused, self._reason = False, ""
            self._acknowledged = self._sum("failed")
            self._canary_checked = True
            await self._set_status("running")
            self._changed = True
        return self.progress()

    @workflow.update
    async def cancel(self) -> FleetProgress:
        """Start nothing new; in-flight restarts finish or unwind; then the run ends."""
        if self._status_open():
            self._cancel_requested()
        return self.progress()

    def _cancel_requested(self) -> None:
        if not self._cancelled:
            self._cancelled, self._reason = True, "cancelled by request"
            self._status_later("cancelling")
        self._changed = True

    @workflow.query
    def progress(self) -> FleetProgress:
        """Done, failed, busy, in flight and remaining, overall and per node."""
        nodes = {}
        for node, counts in sorted(self._nodes.items()):
            in_flight = sum(1 for i in self._in_flight.values() if i.ref.node == node)
            nodes[node] = FleetCounts(
                total=sum(counts.values()) + in_flight,
                restarted=counts["restarted"],
                failed=counts["failed"],
                busy=counts["busy"],
                in_flight=in_flight,
                remaining=counts["pending"],
            )
        overall = FleetCounts(
            total=sum(c.total for c in nodes.values()),
            restarted=sum(c.restarted for c in nodes.values()),
            failed=sum(c.failed for c in nodes.values()),
            busy=sum(c.busy for c in nodes.values()),
            in_flight=sum(c.in_flight for c in nodes.values()),
            remaining=sum(c.remaining for c in nodes.values()),
        )
        return FleetProgress(
            name=self._request.name,
            run_id=self._run_id,
            status=self._status,
            reason=self._reason,
            counts=overall,
            nodes=nodes,
            errors=list(self._errors),
        )

    # -- helpers -------------------------------------------------------------------------------

    def _sum(self, outcome: str) -> int:
        return sum(c[outcome] for c in self._nodes.values())

    def _total(self) -> int:
        return sum(sum(c.values()) for c in self._nodes.values()) + len(self._in_flight)

    def _status_open(self) -> bool:
        return self._status in ("starting", "running", "paused")

    def _summary(self) -> str:
        p = self.progress().counts
        return (
            f"{self._status}: {p.restarted} restarted, {p.failed} failed, {p.busy} busy, "
            f"{p.in_flight} in flight, {p.remaining} remaining of {p.total}"
            + (f" ({self._reason})" if self._reason else "")
        )

    def _status_later(self, status: str) -> None:
        """Change the status from synchronous code; the record follows in its own task."""
        self._status = status
        self._records.append(asyncio.create_task(self._set_status(status, self._reason)))

    async def _set_status(self, status: str, reason: str = "", finished: bool = False) -> None:
        self._status = status
        workflow.upsert_search_attributes([SAGA_PHASE.value_set(status)])
        workflow.set_current_details(self._summary())
        await run_step(
            steps.SET_FLEET_STATUS,
            FleetStatusInput(run_id=self._run_id, status=status, reason=reason, finished=finished),
            f"record fleet restart {self._request.name} {status}",
        )

    def _next_carry(self) -> FleetCarry:
        return FleetCarry(
            paused=self._paused,
            paused_reason=self._reason if self._paused else "",
            cancelled=self._cancelled,
            acknowledged_failures=self._acknowledged,
            canary_checked=self._canary_checked,
            runs=self._carry.runs + 1,
        )

    async def _watch_nodes(self) -> None:
        """Fail the items whose node agent has not picked them up within ``node_wait``."""
        wait = self._request.node_wait
        while True:
            await workflow.wait_condition(lambda: bool(self._in_flight))
            await workflow.sleep(max(1.0, wait / 2))
            now = workflow.now()
            overdue = {
                i.child_id: i
                for i in self._in_flight.values()
                if now - i.started >= timedelta(seconds=wait) and not i.stalled
            }
            if not overdue:
                continue
            stalled = await run_step(
                steps.STALLED_CHILDREN,
                StalledInput(workflow_ids=list(overdue), waited_seconds=wait),
                f"look for restarts no node agent picked up in {wait:g}s",
            )
            for child_id in stalled.workflow_ids:
                item = overdue[child_id]
                item.stalled = True
                if item.task is not None:
                    item.task.cancel()
