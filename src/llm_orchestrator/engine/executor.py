"""The scheduler: runs an ExecutionPlan as an event-driven ready queue.

A node starts the moment its last dependency ends (the finishing node starts its successors
itself; nothing polls). `max_concurrency` bounds running nodes and a freed slot goes to the
next ready node at once. All step tasks live in one TaskGroup: a failing step (unless
`continue_on_error`) cancels its running siblings, and no task outlives the run.

The executor knows nothing of vendors, SQL or HTTP: it calls `node.runnable.run(ctx)`, applies
the retry policy and timeouts, fills declared outputs, and reports through the event bus.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from llm_orchestrator.engine.context import StepContext, StepOutput
from llm_orchestrator.engine.events import (
    EventBus,
    Observer,
    RunFinished,
    RunStarted,
    StepCompleted,
    StepFailed,
    StepRetrying,
    StepSkipped,
    StepStarted,
)
from llm_orchestrator.engine.journal import Ledger, Restored, RunJournal
from llm_orchestrator.engine.plan import ExecutionPlan, PlanNode
from llm_orchestrator.engine.result import (
    AttemptRecord,
    ErrorInfo,
    RunResult,
    RunStatus,
    StepResult,
    StepStatus,
)
from llm_orchestrator.engine.usage import ZERO_USAGE, RunAccounting, Usage
from llm_orchestrator.exceptions import (
    OrchestratorError,
    StepFailedError,
    StepOutputError,
    StepTimeoutError,
)


class _RunAborted(Exception):
    """Raised inside the task group to stop the run after a fatal step failure."""


class _RunCancelled(Exception):
    """Raised inside the task group when the caller asked the run to stop."""


def _error_info(exc: BaseException, step_id: str | None) -> ErrorInfo:
    code = exc.code if isinstance(exc, OrchestratorError) else "step_failed"
    return ErrorInfo(
        code=code, message=str(exc) or type(exc).__name__, step_id=step_id, type=type(exc).__name__
    )


_NOTHING: dict[str, Any] = {}  # shared placeholder, never mutated


class _NodeRecord:
    """Per-step state of one run; allocates nothing until the step runs (memory per run
    in flight matters when thousands wait on a slow provider)."""

    __slots__ = ("status", "outputs", "error", "attempts", "usage", "info", "skip_reason", "skips")

    def __init__(self) -> None:
        self.status = StepStatus.PENDING
        self.outputs: dict[str, Any] = _NOTHING
        self.error: ErrorInfo | None = None
        self.attempts: list[AttemptRecord] | None = None
        self.usage: Usage = ZERO_USAGE
        self.info: dict[str, Any] = _NOTHING
        self.skip_reason: str | None = None
        self.skips: tuple[str, ...] = ()

    def attempted(self, attempt: AttemptRecord) -> None:
        if self.attempts is None:
            self.attempts = [attempt]
        else:
            self.attempts.append(attempt)


class _Run:
    def __init__(
        self,
        plan: ExecutionPlan,
        inputs: Mapping[str, Any],
        run_id: str,
        bus: EventBus,
        max_concurrency: int | None,
        journal: RunJournal | None = None,
        ledger: Ledger | None = None,
        restored: Restored | None = None,
    ) -> None:
        self.plan = plan
        self.journal = journal
        self.ledger = ledger
        self.restored = restored
        self.run_id = run_id
        self.bus = bus
        self.limit = max_concurrency or plan.max_concurrency
        self.accounting = RunAccounting(plan.budget)
        self.records = {node_id: _NodeRecord() for node_id in plan.order}
        self.pending = {
            node_id: len(node.deps) + len(node.soft_deps) for node_id, node in plan.nodes.items()
        }
        self.step_outputs: dict[str, dict[str, Any]] = {}
        self.first_outputs: dict[str, Any] = {}
        self.vars: dict[str, Any] = {
            "inputs": inputs,
            "input": inputs,
            "steps": self.step_outputs,
            "outputs": self.first_outputs,
        }
        # a plain list: ready queues are short, and a deque's first block costs ~600 bytes
        self.ready: list[str] = []
        self.running = 0
        self.group_running: dict[str, int] | None = None
        self.skip_marks: set[str] | None = None
        self.resolved = 0
        self.failure: ErrorInfo | None = None
        #: a fatal failure happened: start nothing more
        self.aborting = False
        self.finished: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.tg: asyncio.TaskGroup | None = None

    # -- scheduling ------------------------------------------------------------------------

    def start(self) -> None:
        if self.restored is not None:
            self._restore(self.restored)
        records = self.records
        nodes = self.plan.nodes
        for node_id in self.plan.order:
            node = nodes[node_id]
            # roots only: restoring already readied the dependents of restored steps
            if (
                not node.deps
                and not node.soft_deps
                and records[node_id].status is (StepStatus.PENDING)
            ):
                self._deps_done(node_id)
        self._pump()
        if self.resolved == len(self.records) and not self.finished.done():
            self.finished.set_result(None)

    def _pump(self) -> None:
        if not self.ready or self.running >= self.limit or self.aborting:
            return
        tg = self.tg
        assert tg is not None
        nodes = self.plan.nodes
        limits = self.plan.group_limits
        deferred: list[str] = []
        while self.ready and self.running < self.limit:
            node_id = self.ready.pop(0)
            group = nodes[node_id].group
            if group is not None:
                if self.group_running is None:
                    self.group_running = {}
                in_group = self.group_running.get(group, 0)
                if in_group >= limits.get(group, self.limit):
                    deferred.append(node_id)
                    continue
                self.group_running[group] = in_group + 1
            self.running += 1
            tg.create_task(self._run_node(nodes[node_id]))
        if deferred:
            deferred.extend(self.ready)
            self.ready = deferred

    def _resolved(self, node_id: str) -> None:
        self.resolved += 1
        pending = self.pending
        for dependent in self.plan.dependents.get(node_id, ()):
            pending[dependent] -= 1
            if pending[dependent] == 0:
                self._deps_done(dependent)
        if self.resolved == len(self.records) and not self.finished.done():
            self.finished.set_result(None)

    def _restore(self, restored: Restored) -> None:
        """Mark the steps a resumed run already completed, in dependency order, without
        running them again."""
        self.accounting.total = restored.usage
        done_ids = [
            node_id
            for node_id in self.plan.order
            if (done := restored.completed.get(node_id)) is not None
            and done.status is StepStatus.COMPLETED
        ]
        # mark them all first: resolving one must not make a restored dependent "ready"
        for node_id in done_ids:
            self.records[node_id].status = StepStatus.COMPLETED
        for node_id in done_ids:
            done = restored.completed[node_id]
            record = self.records[node_id]
            record.status = StepStatus.COMPLETED
            record.outputs = dict(done.outputs)
            record.attempts = list(done.attempts)
            record.usage = done.usage
            record.info = {**done.info, "restored": True}
            record.skips = done.skips
            self._publish(self.plan.nodes[node_id], record.outputs, frozenset(done.skips))
            self._resolved(node_id)

    def _publish(self, node: PlanNode, outputs: dict[str, Any], skips: frozenset[str]) -> None:
        """Make a completed step's outputs visible to the templates of later steps."""
        self.step_outputs[node.id] = outputs
        self.first_outputs[node.id] = next(iter(outputs.values()), None)
        vars_ = self.vars
        for name in node.exports:
            vars_[name] = outputs[name]
        if skips:
            if self.skip_marks is None:
                self.skip_marks = set()
            self.skip_marks.update(skips)

    def _deps_done(self, node_id: str) -> None:
        if self.records[node_id].status is not StepStatus.PENDING:
            return  # restored as completed
        node = self.plan.nodes[node_id]
        if self.skip_marks is not None and node_id in self.skip_marks:
            self._skip(node_id, "its branch was not taken")
            return
        records = self.records
        for dep in node.deps:
            status = records[dep].status
            if status is not StepStatus.COMPLETED:
                self._skip(node_id, f"dependency '{dep}' {status.value}")
                return
        if node.condition is not None:
            try:
                go = node.condition.evaluate(self.vars)
            except OrchestratorError as exc:
                self._fail_unstarted(node, exc)
                return
            if not go:
                self._skip(node_id, f"condition is false: {node.condition.source}")
                return
        self.ready.append(node_id)

    def _skip(self, node_id: str, reason: str) -> None:
        record = self.records[node_id]
        record.status = StepStatus.SKIPPED
        record.skip_reason = reason
        if self.bus.active:
            self.bus.emit(StepSkipped(self.run_id, node_id, reason))
        self._resolved(node_id)

    def _fail_unstarted(self, node: PlanNode, exc: OrchestratorError) -> None:
        record = self.records[node.id]
        record.status = StepStatus.FAILED
        record.error = _error_info(exc, node.id)
        if self.bus.active:
            self.bus.emit(StepFailed(self.run_id, node.id, "failed", str(exc)))
        if not node.continue_on_error and not self.aborting:
            self.failure = record.error
            self.aborting = True
            # cancel everything from inside the group: the run is over
            assert self.tg is not None
            self.tg.create_task(self._abort())
        self._resolved(node.id)

    @staticmethod
    async def _abort() -> None:
        raise _RunAborted

    # -- one node ----------------------------------------------------------------------------

    async def _run_node(self, node: PlanNode) -> None:
        record = self.records[node.id]
        record.status = StepStatus.RUNNING
        policy = node.retry
        bus = self.bus
        attempt = 0
        try:
            while True:
                attempt += 1
                if bus.active:
                    bus.emit(StepStarted(self.run_id, node.id, node.type, attempt))
                ctx = StepContext(
                    self.run_id, node.id, attempt, self.vars, self.accounting, bus, self.ledger
                )
                started_wall = datetime.now(UTC)
                started = time.perf_counter()
                error: BaseException | None = None
                try:
                    if node.timeout is not None:
                        try:
                            async with asyncio.timeout(node.timeout):
                                out = await node.runnable.run(ctx)
                        except TimeoutError as exc:
                            raise StepTimeoutError(
                                f"step '{node.id}' timed out after {node.timeout:g}s "
                                f"(timeout_seconds); the in-flight call was cancelled",
                                step_id=node.id,
                            ) from exc
                    else:
                        out = await node.runnable.run(ctx)
                    outputs = self._fill_outputs(node, out)
                    if self.journal is not None:
                        # committed before any dependent can start
                        await self.journal.step_finished(
                            self.run_id,
                            self._step_result(
                                node,
                                record,
                                outputs,
                                out,
                                ctx,
                                attempt,
                                started_wall,
                                time.perf_counter() - started,
                            ),
                        )
                except asyncio.CancelledError:
                    record.attempted(
                        AttemptRecord(
                            attempt,
                            started_wall,
                            time.perf_counter() - started,
                            ErrorInfo("cancelled", "cancelled", node.id),
                        )
                    )
                    record.usage = record.usage + ctx.usage
                    raise
                except OrchestratorError as exc:
                    error = exc
                except Exception as exc:  # a bug in a step or user function: not retried
                    wrapped = StepFailedError(
                        f"step '{node.id}' raised {type(exc).__name__}: {exc}", step_id=node.id
                    )
                    wrapped.__cause__ = exc
                    error = wrapped
                duration = time.perf_counter() - started
                record.usage = record.usage + ctx.usage
                if error is None:
                    record.attempted(AttemptRecord(attempt, started_wall, duration))
                    self._complete(node, record, outputs, out, duration)
                    return
                info = _error_info(error, node.id)
                record.attempted(AttemptRecord(attempt, started_wall, duration, info))
                retryable = getattr(error, "retryable", False)
                if retryable and attempt < policy.max_attempts:
                    delay = policy.delay(attempt, getattr(error, "retry_after", None))
                    if bus.active:
                        bus.emit(StepRetrying(self.run_id, node.id, attempt, str(error), delay))
                    await asyncio.sleep(delay)
                    continue
                self._failed(node, record, error, info)
                return
        except asyncio.CancelledError:
            record.status = StepStatus.CANCELLED
            record.error = ErrorInfo("cancelled", f"step '{node.id}' was cancelled", node.id)
            self._release(node)
            raise

    def _release(self, node: PlanNode) -> None:
        """Free the node's slot; called before its dependents are resolved and pumped."""
        self.running -= 1
        if node.group is not None:
            assert self.group_running is not None
            self.group_running[node.group] -= 1

    def _step_result(
        self,
        node: PlanNode,
        record: _NodeRecord,
        outputs: dict[str, Any],
        out: StepOutput,
        ctx: StepContext,
        attempt: int,
        started_wall: datetime,
        duration: float,
    ) -> StepResult:
        """The completed step as the journal stores it (this attempt included)."""
        return StepResult(
            step_id=node.id,
            type=node.type,
            status=StepStatus.COMPLETED,
            outputs=outputs,
            attempts=(*(record.attempts or ()), AttemptRecord(attempt, started_wall, duration)),
            usage=record.usage + ctx.usage,
            info=dict(out.info),
            skips=tuple(sorted(out.skip)),
        )

    def _fill_outputs(self, node: PlanNode, out: StepOutput) -> dict[str, Any]:
        values = out.values
        outputs: dict[str, Any] = {}
        paths = {p.name: p for p in node.output_paths} if node.output_paths else None
        for index, name in enumerate(node.output_names):
            if paths is not None and name in paths:
                spec = paths[name]
                raw = (
                    out.raw
                    if out.raw is not None
                    else dict(zip(node.default_outputs, values, strict=False))
                )
                matches = spec.compiled.find(raw)
                if not matches:
                    raise StepOutputError(
                        f"step '{node.id}': output '{name}' maps to {spec.path}, which matched "
                        "nothing in the step's result",
                        step_id=node.id,
                    )
                outputs[name] = (
                    matches[0].value if len(matches) == 1 else [m.value for m in matches]
                )
            elif index < len(values):
                outputs[name] = values[index]
            else:
                raise StepOutputError(
                    f"step '{node.id}' declares output '{name}' but produced only "
                    f"{len(values)} value(s); map it with output_mapping",
                    step_id=node.id,
                )
        return outputs

    def _complete(
        self,
        node: PlanNode,
        record: _NodeRecord,
        outputs: dict[str, Any],
        out: StepOutput,
        duration: float,
    ) -> None:
        self._release(node)
        record.status = StepStatus.COMPLETED
        record.outputs = outputs
        if out.info:
            record.info = dict(out.info)
        if out.skip:
            record.skips = tuple(sorted(out.skip))
        self._publish(node, outputs, out.skip)
        if self.bus.active:
            self.bus.emit(StepCompleted(self.run_id, node.id, duration, outputs))
        self._resolved(node.id)
        self._pump()

    def _failed(
        self, node: PlanNode, record: _NodeRecord, error: BaseException, info: ErrorInfo
    ) -> None:
        self._release(node)
        timed_out = isinstance(error, StepTimeoutError)
        record.status = StepStatus.TIMED_OUT if timed_out else StepStatus.FAILED
        record.error = info
        if self.bus.active:
            self.bus.emit(StepFailed(self.run_id, node.id, record.status.value, str(error)))
        if node.continue_on_error:
            self._resolved(node.id)
            self._pump()
            return
        if not self.aborting:
            self.failure = info
            self.aborting = True
        raise _RunAborted from error

    # -- the whole run ----------------------------------------------------------------------

    async def execute(self, cancel: asyncio.Event | None) -> RunResult:
        started_wall = datetime.now(UTC)
        started = time.perf_counter()
        if self.bus.active:
            self.bus.emit(RunStarted(self.run_id, self.plan.name, self.plan.order))
        status = RunStatus.COMPLETED
        try:
            async with asyncio.timeout(self.plan.timeout):
                try:
                    async with asyncio.TaskGroup() as tg:
                        self.tg = tg
                        watcher = tg.create_task(_watch(cancel)) if cancel is not None else None
                        self.start()
                        await self.finished
                        if watcher is not None:
                            watcher.cancel()
                except* _RunAborted:
                    status = RunStatus.FAILED
                except* _RunCancelled:
                    status = RunStatus.CANCELLED
        except TimeoutError:
            status = RunStatus.TIMED_OUT
        except asyncio.CancelledError:
            self._finalise_unfinished(StepStatus.CANCELLED)
            raise
        if status is RunStatus.TIMED_OUT:
            self._finalise_unfinished(StepStatus.TIMED_OUT)
        elif status is not RunStatus.COMPLETED:
            self._finalise_unfinished(StepStatus.CANCELLED)
        elif self.failure is not None:
            status = RunStatus.FAILED
        result = self._result(status, started_wall)
        if self.bus.active:
            self.bus.emit(RunFinished(self.run_id, status.value, time.perf_counter() - started))
        return result

    def _finalise_unfinished(self, status: StepStatus) -> None:
        """Steps cut short take `status`; steps never started are skipped."""
        for node_id, record in self.records.items():
            if record.status is StepStatus.PENDING:
                record.status = StepStatus.SKIPPED
                record.skip_reason = "the run stopped before this step could start"
            elif record.status in (StepStatus.RUNNING, StepStatus.CANCELLED):
                record.status = status
                if status is StepStatus.TIMED_OUT:
                    record.error = ErrorInfo(
                        "timed_out",
                        f"workflow timed out after {self.plan.timeout:g}s (timeout_seconds); "
                        "the in-flight call was cancelled",
                        node_id,
                    )

    def _result(self, status: RunStatus, started_at: datetime) -> RunResult:
        steps = {
            node_id: StepResult(
                step_id=node_id,
                type=self.plan.nodes[node_id].type,
                status=r.status,
                outputs=r.outputs if r.outputs is not _NOTHING else {},
                error=r.error,
                attempts=tuple(r.attempts or ()),
                usage=r.usage,
                info=r.info if r.info is not _NOTHING else {},
                skip_reason=r.skip_reason,
                skips=r.skips,
            )
            for node_id, r in self.records.items()
        }
        errors: list[ErrorInfo] = []
        if self.failure is not None:
            errors.append(self.failure)
        if status is RunStatus.TIMED_OUT:
            errors.append(
                ErrorInfo("timed_out", f"workflow timed out after {self.plan.timeout:g}s")
            )
        elif status is RunStatus.CANCELLED:
            errors.append(ErrorInfo("cancelled", "the run was cancelled"))
        errors.extend(
            r.error
            for r in self.records.values()
            if r.error is not None and r.status is StepStatus.FAILED and r.error is not self.failure
        )
        return RunResult(
            run_id=self.run_id,
            workflow=self.plan.name,
            status=status,
            steps=steps,
            started_at=started_at,
            finished_at=datetime.now(UTC),
            usage=self.accounting.total,
            errors=tuple(errors),
        )


async def _watch(cancel: asyncio.Event) -> None:
    await cancel.wait()
    raise _RunCancelled


def new_run_id() -> str:
    return uuid.uuid4().hex


class Executor:
    """Runs execution plans. One executor may run many plans concurrently."""

    def __init__(self, observers: list[Observer] | None = None) -> None:
        self.bus = EventBus(observers)

    async def run(
        self,
        plan: ExecutionPlan,
        inputs: Mapping[str, Any] | None = None,
        *,
        run_id: str | None = None,
        cancel: asyncio.Event | None = None,
        max_concurrency: int | None = None,
        journal: RunJournal | None = None,
        ledger: Ledger | None = None,
        restored: Restored | None = None,
    ) -> RunResult:
        """Run a plan. With `journal`, every completed step is persisted before its
        dependents start; with `restored`, the steps it lists are not run again."""
        values = inputs or {}
        if plan.input_defaults:
            values = {**plan.input_defaults, **values}
        run = _Run(
            plan,
            values,
            run_id or new_run_id(),
            self.bus,
            max_concurrency,
            journal,
            ledger,
            restored,
        )
        return await run.execute(cancel)
