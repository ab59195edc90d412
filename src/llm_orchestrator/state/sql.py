"""`SQLStateStore`: the `StateStore` on SQLAlchemy 2 Core, for SQLite and PostgreSQL.

Writes go through one writer per store that commits everything queued so far in a single
transaction (group commit); a caller's write returns only after the commit that holds it.

    caller ─ enqueue(op) ─▶ queue ─▶ writer: BEGIN; op1; op2; ... opN; COMMIT ─▶ futures
                                     (an op that raises is rolled back with its batch, the
                                      batch is retried without it, then it is retried alone)

Write operations are plain functions of a SQLAlchemy `Connection`. On SQLite the writer runs
each batch on its own thread with the standard library driver, under `BEGIN IMMEDIATE` (so
writers of other processes queue on the busy timeout instead of failing): SQLite allows one
writer anyway, and a statement costs ~20 µs there against ~150 µs through the async adapter.
On PostgreSQL the batch runs on an asyncpg connection through `AsyncConnection.run_sync`.
Reads use the async engine's pooled connections and never wait for the writer.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any, Generic, Self, TypeVar

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg_dialect
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import DBAPIError, IntegrityError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from llm_orchestrator.exceptions import (
    CheckpointNotFoundError,
    OrchestratorError,
    RunNotFoundError,
    StateError,
)
from llm_orchestrator.settings import StateSettings
from llm_orchestrator.state import codec, migrate
from llm_orchestrator.state.codec import BlobCodec, Cipher, Sealed
from llm_orchestrator.state.models import (
    CheckpointInfo,
    LedgerEntry,
    RunState,
    StoredRun,
    StoredStep,
    WorkflowDefinition,
)
from llm_orchestrator.state.schema import (
    checkpoints,
    ledger,
    outputs,
    run_outputs,
    runs,
    step_runs,
    workflows,
)

__all__ = ["SQLStateStore"]

T = TypeVar("T")

#: most operations one group commit carries
MAX_BATCH = 256
#: values whose JSON is larger than this are encoded/decoded in a worker thread
OFFLOAD_BYTES = 256 * 1024
#: ids per IN (...) list, and runs deleted per transaction
CHUNK = 500

COMPLETED = "completed"
_CLAIMABLE = (RunState.PENDING.value, RunState.RUNNING.value)
_FINISHED = tuple(state.value for state in RunState if state.finished)


def _now() -> datetime:
    return datetime.now(UTC)


def _aware(value: datetime | None, what: str) -> datetime | None:
    if value is not None and value.tzinfo is None:
        raise StateError(
            f"{what} is a naive datetime ({value.isoformat()}); pass an aware one, "
            "e.g. datetime.now(UTC)"
        )
    return value


def _chunks(items: Sequence[T], size: int = CHUNK) -> Iterable[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _describe(exc: BaseException) -> str:
    if isinstance(exc, DBAPIError) and exc.orig is not None:
        return f"{type(exc.orig).__name__}: {exc.orig}"
    return f"{type(exc).__name__}: {exc}"


def _is_foreign_key_violation(exc: IntegrityError) -> bool:
    return "foreign key" in str(exc.orig).lower()


def _state_error(label: str, exc: BaseException) -> OrchestratorError:
    if isinstance(exc, OrchestratorError):
        return exc
    error = StateError(f"{label} failed: {_describe(exc)}")
    error.__cause__ = exc
    return error


@dataclass(eq=False)
class _Op(Generic[T]):
    """One queued write: `run` executes it inside the writer's transaction."""

    label: str
    run: Callable[[Connection], T]
    future: asyncio.Future[T]
    error: BaseException | None = None
    result: Any = None


class _Stop:
    """Queued by close(): the writer finishes what is before it and exits."""


class _Statements:
    """The hot write statements, built once per backend and executed with parameters
    (building a Core statement costs more than SQLite takes to run it)."""

    def __init__(self, backend: str) -> None:
        insert = pg_dialect.insert if backend == "postgresql" else sqlite_dialect.insert
        self.insert = insert
        self.put_outputs = insert(outputs).on_conflict_do_nothing(index_elements=["hash"])
        self.put_run_outputs = insert(run_outputs).on_conflict_do_nothing(
            index_elements=["run_id", "outputs_hash"]
        )
        upsert = insert(step_runs)
        self.upsert_step = upsert.on_conflict_do_update(
            index_elements=["run_id", "step_id"],
            set_={
                c.name: upsert.excluded[c.name]
                for c in step_runs.c
                if c.name not in ("run_id", "step_id")
            },
        )
        self.step_usage = sa.select(
            step_runs.c.step_id,
            step_runs.c.status,
            step_runs.c.outputs_hash,
            step_runs.c.input_tokens,
            step_runs.c.output_tokens,
            step_runs.c.cost_usd,
        ).where(step_runs.c.run_id == sa.bindparam("run_id"))
        # an INSERT's own columns cannot be bind parameter names: prefix them with p_
        params: dict[str, Any] = {
            c.name: sa.bindparam(f"p_{c.name}", type_=c.type) for c in checkpoints.c
        }
        params["seq"] = (
            sa.select(sa.func.coalesce(sa.func.max(checkpoints.c.seq), 0) + 1)
            .where(checkpoints.c.run_id == params["run_id"])
            .scalar_subquery()
        )
        self.put_checkpoint = sa.insert(checkpoints).values(params)
        self.put_run = sa.insert(runs)


class SQLStateStore:
    """The state store on SQLite (`sqlite+aiosqlite:///path.db`) or PostgreSQL
    (`postgresql+asyncpg://user:pw@host/db`)."""

    def __init__(
        self, url: str, settings: StateSettings | None = None, *, cipher: Cipher | None = None
    ) -> None:
        self.url = url
        self.settings = settings if settings is not None else StateSettings()
        self.backend = make_url(url).get_backend_name()
        if self.backend not in ("sqlite", "postgresql"):
            raise StateError(
                f"{migrate.display_url(url)}: unsupported database; use sqlite+aiosqlite:/// "
                "or postgresql+asyncpg://"
            )
        #: how blobs are encoded (and encrypted, with `cipher`)
        self.codec = BlobCodec(cipher)
        self._sql = _Statements(self.backend)
        self._read: AsyncEngine | None = None
        #: SQLite: the writer's own engine and thread
        self._sync_write: Engine | None = None
        self._write_thread: ThreadPoolExecutor | None = None
        self._queue: asyncio.Queue[_Op[Any] | _Stop] = asyncio.Queue()
        #: run id -> last step completed in the transaction being written (writer only)
        self._checkpoint_due: dict[str, str] = {}
        self._writer: asyncio.Task[None] | None = None
        self._closing = False

    # -- lifecycle -----------------------------------------------------------------------

    async def open(self) -> None:
        """Connect; SQLite upgrades its schema itself, PostgreSQL refuses an old schema."""
        if self._writer is not None:
            return
        where = migrate.display_url(self.url)
        s = self.settings
        pool_size = max(1, s.pool_min_size)
        pool = {
            "pool_size": pool_size,
            "max_overflow": max(0, s.pool_max_size - pool_size),
            "pool_timeout": s.pool_timeout_seconds,
            "pool_recycle": int(s.pool_recycle_seconds),
            "hide_parameters": True,
        }
        if self.backend == "sqlite":
            migrate.sqlite_path(self.url)  # refuses :memory: before anything else
            await migrate.upgrade(self.url, busy_timeout_seconds=s.busy_timeout_seconds)
            # creating a SQLite engine touches the file system (abspath): not on the loop
            self._read, self._sync_write = await asyncio.to_thread(self._sqlite_engines, pool)
            self._write_thread = ThreadPoolExecutor(1, thread_name_prefix="llmo-state-writer")
        else:
            self._read = create_async_engine(self.url, pool_pre_ping=True, **pool)
            try:
                head = await asyncio.to_thread(migrate.head_revision)
                async with self._read.connect() as connection:
                    current = await migrate.read_revision(connection)
            except (SQLAlchemyError, OSError) as exc:
                await self._dispose()
                raise StateError(f"{where}: cannot connect: {_describe(exc)}") from exc
            if current != head:
                await self._dispose()
                migrate.require_head(current, self.url)
        self._closing = False
        self._writer = asyncio.create_task(self._write_loop(), name=f"state-writer {where}")

    def _sqlite_engines(self, pool: dict[str, Any]) -> tuple[AsyncEngine, Engine]:
        """The readers' async engine and the writer's own (standard library driver)."""
        timeout = self.settings.busy_timeout_seconds
        read = create_async_engine(self.url, **pool)
        migrate.configure_sqlite(read.sync_engine, busy_timeout_seconds=timeout)
        write = sa.create_engine(
            make_url(self.url).set(drivername="sqlite"),
            pool_size=1,
            max_overflow=0,
            hide_parameters=True,
        )
        migrate.configure_sqlite(write, busy_timeout_seconds=timeout, begin="BEGIN IMMEDIATE")
        return read, write

    async def close(self) -> None:
        """Finish every queued write, then disconnect."""
        writer = self._writer
        if writer is None:
            return
        self._closing = True
        self._queue.put_nowait(_Stop())
        try:
            await writer
        finally:
            self._writer = None
            await self._dispose()

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def _dispose(self) -> None:
        read, sync_write, thread = self._read, self._sync_write, self._write_thread
        self._read = self._sync_write = self._write_thread = None
        if read is not None:
            await read.dispose()
        if thread is not None:
            if sync_write is not None:
                # sqlite3 connections may only be closed by the thread that opened them
                await asyncio.get_running_loop().run_in_executor(thread, sync_write.dispose)
            thread.shutdown(wait=False)

    # -- the writer ----------------------------------------------------------------------

    async def _submit(self, label: str, run: Callable[[Connection], T]) -> T:
        """Queue a write and wait until the transaction holding it has committed."""
        if self._writer is None or self._closing:
            raise StateError(f"{label}: the state store is not open")
        if self._writer.done():
            raise StateError(f"{label}: the state store's writer has stopped")
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Op(label, run, future))
        return await future

    async def _write_loop(self) -> None:
        batch: list[_Op[Any]] = []
        try:
            stop = False
            while not stop:
                item = await self._queue.get()
                batch = []
                while True:
                    if isinstance(item, _Stop):
                        stop = True
                        break
                    if not item.future.cancelled():
                        batch.append(item)
                    if len(batch) >= MAX_BATCH or self._queue.empty():
                        break
                    item = self._queue.get_nowait()
                if batch:
                    await self._execute(batch)
                    for op in batch:
                        if op.future.done():
                            continue
                        if op.error is not None:
                            op.future.set_exception(_state_error(op.label, op.error))
                        else:
                            op.future.set_result(op.result)
                batch = []
        finally:
            # cancelled or broken: nobody may wait forever for a write that will not happen
            left = batch + [op for op in _drain(self._queue) if isinstance(op, _Op)]
            for op in left:
                if not op.future.done():
                    op.future.set_exception(
                        StateError(f"{op.label}: the state store's writer stopped")
                    )

    async def _execute(self, batch: list[_Op[Any]]) -> None:
        """Run the batch on the writer's connection; sets each op's result or error."""
        try:
            if self._sync_write is not None:
                await asyncio.get_running_loop().run_in_executor(
                    self._write_thread, self._run_batch_on_engine, self._sync_write, batch
                )
            else:
                assert self._read is not None
                async with self._read.connect() as connection:
                    await connection.run_sync(self._run_batch, batch)
        except Exception as exc:  # no connection: every op gets the error
            for op in batch:
                op.error = exc

    def _run_batch_on_engine(self, engine: Engine, batch: list[_Op[Any]]) -> None:
        with engine.connect() as connection:
            self._run_batch(connection, batch)

    def _run_batch(self, connection: Connection, batch: list[_Op[Any]]) -> None:
        """Run `batch` in one transaction. An op that raises is taken out and the others are
        retried together; then the failed op runs once more alone (its failure may have been
        caused by the batch: a lock timeout, a serialization failure)."""
        pending = batch
        failed: list[_Op[Any]] = []
        while pending:
            culprit = self._attempt(connection, pending)
            if culprit is None:
                break
            failed.append(culprit)
            pending = [op for op in pending if op is not culprit]
        for op in failed:
            self._attempt(connection, [op])

    def _attempt(self, connection: Connection, ops: list[_Op[Any]]) -> _Op[Any] | None:
        """Run `ops` in one transaction and set each op's result or error. Returns the op
        that raised (everything was rolled back), else None; a failed BEGIN or COMMIT fails
        every op.

        Checkpoints are written last, one per run: steps of one run committed together
        become durable at the same instant, so the state after the last of them is the only
        one a crash could ever resume from."""
        current: _Op[Any] | None = None
        self._checkpoint_due.clear()
        try:
            with connection.begin():
                for op in ops:
                    current = op
                    op.result = op.run(connection)
                current = None
                for run_id, step_id in self._checkpoint_due.items():
                    self._write_checkpoint(connection, run_id, step_id)
        except Exception as exc:  # delivered to the caller through its future
            if current is not None:
                current.error = exc
                return current
            for op in ops:
                op.error = exc
            return None
        for op in ops:
            op.error = None
        return None

    # -- reads ---------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def _reading(self, label: str) -> AsyncIterator[AsyncConnection]:
        if self._read is None:
            raise StateError(f"{label}: the state store is not open")
        try:
            async with self._read.connect() as connection:
                yield connection
        except (SQLAlchemyError, OSError) as exc:
            raise StateError(f"{label} failed: {_describe(exc)}") from exc

    def _insert(self, table: sa.Table) -> Any:
        """INSERT that knows ON CONFLICT, for this backend."""
        return self._sql.insert(table)

    # -- encoding ------------------------------------------------------------------------

    async def _seal(self, value: object, where: str, *, outputs: bool = False) -> Sealed:
        """Validate and encode; large values are encoded in a worker thread."""
        if _rough_size(value) > OFFLOAD_BYTES:
            return await asyncio.to_thread(self.codec.seal, value, where, outputs=outputs)
        return self.codec.seal(value, where, outputs=outputs)

    def _unseal(self, data: bytes, expected_hash: str | None = None) -> Any:
        return self.codec.unseal(data, expected_hash=expected_hash)

    async def _unseal_many(self, blobs: dict[str, bytes]) -> dict[str, Any]:
        if sum(len(b) for b in blobs.values()) * 4 > OFFLOAD_BYTES:
            return await asyncio.to_thread(
                lambda: {h: self._unseal(b, h) for h, b in blobs.items()}
            )
        return {h: self._unseal(b, h) for h, b in blobs.items()}

    # -- definitions and runs ------------------------------------------------------------

    async def save_workflow(self, definition: WorkflowDefinition) -> None:
        """Idempotent by hash."""
        where = f"workflow '{definition.name}' ({definition.hash})"
        document = codec.dumps(definition.document, f"{where}, document")
        created_at = _aware(definition.created_at, f"{where} created_at") or _now()
        stmt = (
            self._insert(workflows)
            .values(
                hash=definition.hash,
                name=definition.name,
                version=definition.version,
                document=document,
                created_at=created_at,
            )
            .on_conflict_do_nothing(index_elements=["hash"])
        )

        def op(connection: Connection) -> None:
            connection.execute(stmt)

        await self._submit(f"save {where}", op)

    async def get_workflow(self, workflow_hash: str) -> WorkflowDefinition | None:
        async with self._reading(f"get workflow {workflow_hash}") as connection:
            row = (
                await connection.execute(
                    sa.select(workflows).where(workflows.c.hash == workflow_hash)
                )
            ).one_or_none()
        if row is None:
            return None
        return WorkflowDefinition(
            hash=row.hash,
            name=row.name,
            version=row.version,
            document=codec.loads(row.document),
            created_at=row.created_at,
        )

    async def create_run(self, run: StoredRun) -> None:
        where = f"run {run.id}"
        for name in ("created_at", "lease_expires_at", "started_at", "finished_at"):
            _aware(getattr(run, name), f"{where} {name}")
        inputs_blob = (await self._seal(run.inputs, f"{where}, inputs")).data
        error = None if run.error is None else codec.dumps(run.error, f"{where}, error")
        values = {
            "id": run.id,
            "workflow_hash": run.workflow_hash,
            "workflow_name": run.workflow_name,
            "status": RunState(run.status).value,
            "user_id": run.user_id,
            "owner": run.owner,
            "lease_expires_at": run.lease_expires_at,
            "inputs": inputs_blob,
            "created_at": run.created_at,
            "started_at": run.started_at,
            "finished_at": run.finished_at,
            "error": error,
            "input_tokens": run.input_tokens,
            "output_tokens": run.output_tokens,
            "cost_usd": run.cost_usd,
            "parent_run_id": run.parent_run_id,
        }

        def op(connection: Connection) -> None:
            try:
                connection.execute(self._sql.put_run, values)
            except IntegrityError as exc:
                if _is_foreign_key_violation(exc):
                    raise StateError(
                        f"{where} refers to workflow {run.workflow_hash}, which is not saved; "
                        "call save_workflow first"
                    ) from exc
                raise StateError(f"{where} already exists") from exc

        await self._submit(f"create {where}", op)

    async def update_run(
        self,
        run_id: str,
        *,
        status: RunState | None = None,
        error: dict[str, Any] | None = None,
        started_at: datetime | None = None,
        finished_at: datetime | None = None,
        usage: tuple[int, int, float] | None = None,
        owner: str | None = None,
        lease_expires_at: datetime | None = None,
        workflow_hash: str | None = None,
    ) -> None:
        """Change only the given fields. Raises RunNotFoundError."""
        where = f"run {run_id}"
        values: dict[str, Any] = {}
        if status is not None:
            state = RunState(status)
            values["status"] = state.value
            if state.finished:  # an ended run holds no lease
                values["owner"] = None
                values["lease_expires_at"] = None
            elif state is RunState.RUNNING:  # running again: the old error is history
                values["error"] = None
        if error is not None:
            values["error"] = codec.dumps(error, f"{where}, error")
        if started_at is not None:
            values["started_at"] = _aware(started_at, f"{where} started_at")
        if finished_at is not None:
            values["finished_at"] = _aware(finished_at, f"{where} finished_at")
        if usage is not None:
            values["input_tokens"], values["output_tokens"], values["cost_usd"] = usage
        if owner is not None:
            values["owner"] = owner
        if lease_expires_at is not None:
            values["lease_expires_at"] = _aware(lease_expires_at, f"{where} lease_expires_at")
        if workflow_hash is not None:
            values["workflow_hash"] = workflow_hash

        def op(connection: Connection) -> None:
            if values:
                result = connection.execute(
                    sa.update(runs).where(runs.c.id == run_id).values(values)
                )
                found = result.rowcount > 0
            else:
                exists = sa.select(sa.literal(1)).where(runs.c.id == run_id)
                found = connection.scalar(exists) is not None
            if not found:
                raise RunNotFoundError(f"no run with id {run_id}")

        await self._submit(f"update {where}", op)

    async def get_run(self, run_id: str) -> StoredRun | None:
        async with self._reading(f"get run {run_id}") as connection:
            row = (
                await connection.execute(sa.select(runs).where(runs.c.id == run_id))
            ).one_or_none()
        return None if row is None else self._run_from(row)

    async def list_runs(
        self,
        *,
        status: RunState | None = None,
        workflow: str | None = None,
        since: datetime | None = None,
        user_id: str | None = None,
        limit: int = 100,
    ) -> list[StoredRun]:
        """Newest first."""
        query = sa.select(runs)
        if status is not None:
            query = query.where(runs.c.status == RunState(status).value)
        if workflow is not None:
            query = query.where(runs.c.workflow_name == workflow)
        if since is not None:
            query = query.where(runs.c.created_at >= _aware(since, "list_runs since"))
        if user_id is not None:
            query = query.where(runs.c.user_id == user_id)
        query = query.order_by(runs.c.created_at.desc(), runs.c.id.desc()).limit(limit)
        async with self._reading("list runs") as connection:
            rows = (await connection.execute(query)).all()
        return [self._run_from(row) for row in rows]

    def _run_from(self, row: sa.Row[Any]) -> StoredRun:
        return StoredRun(
            id=row.id,
            workflow_hash=row.workflow_hash,
            workflow_name=row.workflow_name,
            status=RunState(row.status),
            inputs=self._unseal(row.inputs),
            created_at=row.created_at,
            user_id=row.user_id,
            owner=row.owner,
            lease_expires_at=row.lease_expires_at,
            started_at=row.started_at,
            finished_at=row.finished_at,
            error=None if row.error is None else codec.loads(row.error),
            input_tokens=int(row.input_tokens),
            output_tokens=int(row.output_tokens),
            cost_usd=float(row.cost_usd),
            parent_run_id=row.parent_run_id,
        )

    # -- steps and checkpoints -----------------------------------------------------------

    async def record_step(self, step: StoredStep, *, checkpoint: bool = True) -> None:
        """Upsert the step; when it completed and `checkpoint`, write a checkpoint capturing
        every completed step of the run so far. One transaction."""
        where = f"run {step.run_id}, step '{step.step_id}'"
        sealed = (
            None if step.outputs is None else await self._seal(step.outputs, where, outputs=True)
        )
        _aware(step.started_at, f"{where} started_at")
        _aware(step.finished_at, f"{where} finished_at")
        values = {
            "run_id": step.run_id,
            "step_id": step.step_id,
            "type": step.type,
            "status": str(step.status),
            "attempts": codec.dumps(step.attempts, f"{where}, attempts"),
            "outputs_hash": None if sealed is None else sealed.hash,
            "error": None if step.error is None else codec.dumps(step.error, f"{where}, error"),
            "info": codec.dumps(step.info, f"{where}, info"),
            "skips": codec.dumps(step.skips, f"{where}, skips"),
            "input_tokens": step.input_tokens,
            "output_tokens": step.output_tokens,
            "cost_usd": step.cost_usd,
            "started_at": step.started_at,
            "finished_at": step.finished_at,
        }
        take_checkpoint = checkpoint and str(step.status) == COMPLETED
        sql = self._sql

        def op(connection: Connection) -> None:
            try:
                if sealed is not None:
                    connection.execute(
                        sql.put_outputs,
                        {"hash": sealed.hash, "data": sealed.data, "size": sealed.size},
                    )
                    connection.execute(
                        sql.put_run_outputs, {"run_id": step.run_id, "outputs_hash": sealed.hash}
                    )
                connection.execute(sql.upsert_step, values)
            except IntegrityError as exc:
                if not _is_foreign_key_violation(exc):
                    raise
                raise RunNotFoundError(
                    f"{where}: no run with id {step.run_id}; create_run before record_step"
                ) from exc
            if take_checkpoint:  # written at the end of the transaction (see _attempt)
                self._checkpoint_due[step.run_id] = step.step_id

        await self._submit(f"record {where}", op)

    def _write_checkpoint(self, connection: Connection, run_id: str, step_id: str) -> None:
        rows = connection.execute(self._sql.step_usage, {"run_id": run_id}).all()
        snapshot = {
            "steps": {row.step_id: row.outputs_hash for row in rows if row.status == COMPLETED},
            "usage": {
                "input_tokens": sum(int(row.input_tokens) for row in rows),
                "output_tokens": sum(int(row.output_tokens) for row in rows),
                "cost_usd": sum(float(row.cost_usd) for row in rows),
            },
        }
        blob = self.codec.seal(snapshot, f"run {run_id}, checkpoint after step '{step_id}'")
        connection.execute(
            self._sql.put_checkpoint,
            {
                "p_id": uuid.uuid4().hex,
                "p_run_id": run_id,
                "p_step_id": step_id,
                "p_created_at": _now(),
                "p_snapshot": blob.data,
            },
        )

    async def get_steps(self, run_id: str) -> list[StoredStep]:
        """All recorded steps of a run, with outputs."""
        query = (
            sa.select(step_runs, outputs.c.data)
            .select_from(step_runs.outerjoin(outputs, outputs.c.hash == step_runs.c.outputs_hash))
            .where(step_runs.c.run_id == run_id)
            .order_by(step_runs.c.started_at.asc().nulls_last(), step_runs.c.step_id)
        )
        async with self._reading(f"get steps of run {run_id}") as connection:
            rows = (await connection.execute(query)).all()
        blobs = {row.outputs_hash: row.data for row in rows if row.outputs_hash is not None}
        values = await self._unseal_many(blobs)
        return [self._step_from(row, values, row.outputs_hash, row.status) for row in rows]

    @staticmethod
    def _step_from(
        row: sa.Row[Any], values: dict[str, Any], outputs_hash: str | None, status: str
    ) -> StoredStep:
        return StoredStep(
            run_id=row.run_id,
            step_id=row.step_id,
            type=row.type,
            status=status,
            attempts=codec.loads(row.attempts),
            outputs=None if outputs_hash is None else values[outputs_hash],
            error=None if row.error is None else codec.loads(row.error),
            info=codec.loads(row.info),
            skips=codec.loads(row.skips),
            input_tokens=int(row.input_tokens),
            output_tokens=int(row.output_tokens),
            cost_usd=float(row.cost_usd),
            started_at=row.started_at,
            finished_at=row.finished_at,
            outputs_hash=outputs_hash,
        )

    async def list_checkpoints(self, run_id: str) -> list[CheckpointInfo]:
        """Newest first."""
        query = (
            sa.select(checkpoints)
            .where(checkpoints.c.run_id == run_id)
            .order_by(checkpoints.c.created_at.desc(), checkpoints.c.seq.desc())
        )
        async with self._reading(f"list checkpoints of run {run_id}") as connection:
            rows = (await connection.execute(query)).all()
        return [
            CheckpointInfo(
                id=row.id,
                run_id=row.run_id,
                step_id=row.step_id,
                created_at=row.created_at,
                completed=len(self._unseal(row.snapshot)["steps"]),
            )
            for row in rows
        ]

    async def load_checkpoint(self, checkpoint_id: str) -> tuple[StoredRun, list[StoredStep]]:
        """The run and its completed steps as of that checkpoint. Raises CheckpointNotFound.

        Outputs and usage totals are those the checkpoint captured; the other step fields
        (attempts, info, skips, times) are the step rows as stored now."""
        label = f"load checkpoint {checkpoint_id}"
        async with self._reading(label) as connection, connection.begin():
            found = (
                await connection.execute(
                    sa.select(checkpoints.c.run_id, checkpoints.c.snapshot).where(
                        checkpoints.c.id == checkpoint_id
                    )
                )
            ).one_or_none()
            if found is None:
                raise CheckpointNotFoundError(f"no checkpoint with id {checkpoint_id}")
            snapshot = self._unseal(found.snapshot)
            captured: dict[str, str | None] = snapshot["steps"]
            run_row = (
                await connection.execute(sa.select(runs).where(runs.c.id == found.run_id))
            ).one()
            step_rows = (
                await connection.execute(
                    sa.select(step_runs)
                    .where(
                        step_runs.c.run_id == found.run_id,
                        step_runs.c.step_id.in_(list(captured)),
                    )
                    .order_by(step_runs.c.started_at.asc().nulls_last(), step_runs.c.step_id)
                )
            ).all()
            hashes = sorted({h for h in captured.values() if h is not None})
            blobs: dict[str, bytes] = {}
            for chunk in _chunks(hashes):
                result = await connection.execute(
                    sa.select(outputs.c.hash, outputs.c.data).where(outputs.c.hash.in_(chunk))
                )
                blobs.update({row.hash: row.data for row in result})
        missing = set(hashes) - set(blobs)
        if missing:
            raise StateError(
                f"checkpoint {checkpoint_id} refers to outputs {sorted(missing)} that are gone"
            )
        values = await self._unseal_many(blobs)
        usage = snapshot["usage"]
        run = dataclasses.replace(
            self._run_from(run_row),
            input_tokens=usage["input_tokens"],
            output_tokens=usage["output_tokens"],
            cost_usd=usage["cost_usd"],
        )
        steps = [
            self._step_from(row, values, captured[row.step_id], COMPLETED) for row in step_rows
        ]
        return run, steps

    # -- leases and recovery -------------------------------------------------------------

    async def claim_interrupted(
        self, owner: str, lease_seconds: float, limit: int = 100
    ) -> list[StoredRun]:
        """Atomically take runs whose status is running/pending and whose lease expired (or
        that have none), setting owner and a new lease. Safe across processes/replicas."""

        def op(connection: Connection) -> list[sa.Row[Any]]:
            now = _now()
            expires = now + timedelta(seconds=lease_seconds)
            claimable = sa.and_(
                runs.c.status.in_(_CLAIMABLE),
                sa.or_(runs.c.lease_expires_at.is_(None), runs.c.lease_expires_at < now),
            )
            pick = (
                sa.select(runs.c.id)
                .where(claimable)
                .order_by(runs.c.created_at, runs.c.id)
                .limit(limit)
            )
            target: sa.ColumnElement[bool]
            if self.backend == "postgresql":
                # rows another replica is claiming right now are skipped, not waited for
                ids = list(connection.execute(pick.with_for_update(skip_locked=True)).scalars())
                if not ids:
                    return []
                target = runs.c.id.in_(ids)
            else:
                # one statement, under the write lock BEGIN IMMEDIATE took
                target = sa.and_(runs.c.id.in_(pick.scalar_subquery()), claimable)
            result = connection.execute(
                sa.update(runs)
                .where(target)
                .values(owner=owner, lease_expires_at=expires)
                .returning(*runs.c)
            )
            return list(result.all())

        rows = await self._submit(f"claim interrupted runs for {owner}", op)
        claimed = [self._run_from(row) for row in rows]
        claimed.sort(key=lambda run: (run.created_at, run.id))
        return claimed

    async def heartbeat(self, run_ids: Sequence[str], owner: str, lease_seconds: float) -> int:
        """Extend the leases this owner holds; returns how many were extended."""
        ids = list(run_ids)
        if not ids:
            return 0

        def op(connection: Connection) -> int:
            expires = _now() + timedelta(seconds=lease_seconds)
            total = 0
            for chunk in _chunks(ids):
                result = connection.execute(
                    sa.update(runs)
                    .where(runs.c.id.in_(chunk), runs.c.owner == owner)
                    .values(lease_expires_at=expires)
                )
                total += result.rowcount
            return total

        return await self._submit(f"heartbeat of {owner}", op)

    # -- side-effect ledger --------------------------------------------------------------

    async def ledger_claim(self, run_id: str, step_id: str, key: str) -> LedgerEntry:
        """Record a claim (idempotent); returns the entry, with its receipt if one exists."""
        where = f"run {run_id}, step '{step_id}', ledger key {key!r}"
        pk = sa.and_(
            ledger.c.run_id == run_id, ledger.c.step_id == step_id, ledger.c.idempotency_key == key
        )

        def op(connection: Connection) -> sa.Row[Any]:
            try:
                connection.execute(
                    self._insert(ledger)
                    .values(run_id=run_id, step_id=step_id, idempotency_key=key, claimed_at=_now())
                    .on_conflict_do_nothing(index_elements=["run_id", "step_id", "idempotency_key"])
                )
            except IntegrityError as exc:
                if not _is_foreign_key_violation(exc):
                    raise
                raise RunNotFoundError(f"{where}: no run with id {run_id}") from exc
            return connection.execute(sa.select(ledger).where(pk)).one()

        row = await self._submit(f"claim {where}", op)
        return LedgerEntry(
            run_id=row.run_id,
            step_id=row.step_id,
            idempotency_key=row.idempotency_key,
            claimed_at=row.claimed_at,
            receipt=None if row.receipt is None else codec.loads(row.receipt),
            completed_at=row.completed_at,
        )

    async def ledger_receipt(
        self, run_id: str, step_id: str, key: str, receipt: dict[str, Any]
    ) -> None:
        """Attach the receipt to the claim (the latest receipt wins)."""
        where = f"run {run_id}, step '{step_id}', ledger key {key!r}"
        text = codec.dumps(receipt, f"{where}, receipt")

        def op(connection: Connection) -> None:
            result = connection.execute(
                sa.update(ledger)
                .where(
                    ledger.c.run_id == run_id,
                    ledger.c.step_id == step_id,
                    ledger.c.idempotency_key == key,
                )
                .values(receipt=text, completed_at=_now())
            )
            if result.rowcount == 0:
                raise StateError(f"{where}: nothing was claimed; call ledger_claim first")

        await self._submit(f"receipt for {where}", op)

    # -- retention -----------------------------------------------------------------------

    async def prune_checkpoints(self, *, keep_last: int, older_than: datetime) -> int:
        """Delete checkpoints beyond the newest `keep_last` of each run that are also older
        than `older_than`; returns how many were deleted."""
        if keep_last < 0:
            raise StateError(f"prune_checkpoints: keep_last must be >= 0, not {keep_last}")
        cutoff = _aware(older_than, "prune_checkpoints older_than")
        ranked = sa.select(
            checkpoints.c.id,
            checkpoints.c.created_at,
            sa.func.row_number()
            .over(
                partition_by=checkpoints.c.run_id,
                order_by=(checkpoints.c.created_at.desc(), checkpoints.c.seq.desc()),
            )
            .label("rank"),
        ).subquery()
        doomed = sa.select(ranked.c.id).where(
            ranked.c.rank > keep_last, ranked.c.created_at < cutoff
        )
        stmt = sa.delete(checkpoints).where(checkpoints.c.id.in_(doomed.scalar_subquery()))

        return await self._submit(
            "prune checkpoints", lambda connection: connection.execute(stmt).rowcount
        )

    async def delete_runs(self, *, finished_before: datetime) -> int:
        """Delete finished runs (steps, checkpoints, ledger) and unreferenced outputs."""
        cutoff = _aware(finished_before, "delete_runs finished_before")
        return await self._delete_where(
            "delete finished runs",
            sa.and_(
                runs.c.status.in_(_FINISHED),
                runs.c.finished_at.is_not(None),
                runs.c.finished_at < cutoff,
            ),
        )

    async def purge_user(self, user_id: str) -> int:
        """Erase every run of a user and every output only they referenced."""
        return await self._delete_where(f"purge user {user_id!r}", runs.c.user_id == user_id)

    async def _delete_where(self, label: str, condition: sa.ColumnElement[bool]) -> int:
        """Delete matching runs CHUNK at a time (each chunk its own transaction), with every
        row that hangs off them, then the outputs no remaining run refers to."""

        def op(connection: Connection) -> int:
            pick = sa.select(runs.c.id).where(condition).order_by(runs.c.id).limit(CHUNK)
            ids = list(connection.execute(pick).scalars())
            if not ids:
                return 0
            candidates = list(
                connection.execute(
                    sa.select(run_outputs.c.outputs_hash)
                    .where(run_outputs.c.run_id.in_(ids))
                    .distinct()
                ).scalars()
            )
            # explicit deletes, not only ON DELETE CASCADE: correct even on a connection
            # that has foreign keys off
            for table in (ledger, checkpoints, step_runs, run_outputs):
                connection.execute(sa.delete(table).where(table.c.run_id.in_(ids)))
            connection.execute(sa.delete(runs).where(runs.c.id.in_(ids)))
            for chunk in _chunks(candidates):
                connection.execute(
                    sa.delete(outputs).where(
                        outputs.c.hash.in_(chunk),
                        ~sa.exists().where(run_outputs.c.outputs_hash == outputs.c.hash),
                    )
                )
            return len(ids)

        total = 0
        while True:
            deleted = await self._submit(label, op)
            total += deleted
            if deleted < CHUNK:
                return total

    async def storage_stats(self) -> dict[str, int]:
        """Row counts and bytes stored, per table (for benchmarks and `db current`).

        Keys: `<table>_rows`, `<table>_bytes` (bytes of the blob and JSON columns) and
        `database_bytes` (the whole database file or PostgreSQL database)."""
        tables = (workflows, runs, outputs, run_outputs, step_runs, checkpoints, ledger)
        stats: dict[str, int] = {}
        async with self._reading("storage stats") as connection:
            for table in tables:
                sized = [c for c in table.c if isinstance(c.type, sa.Text | sa.LargeBinary)]
                parts: list[sa.ColumnElement[Any]] = [
                    sa.func.coalesce(self._octets(c), 0) for c in sized
                ]
                total: sa.ColumnElement[Any] = sa.literal(0)
                for part in parts:
                    total = total + part
                row = (
                    await connection.execute(
                        sa.select(
                            sa.func.count(), sa.func.coalesce(sa.func.sum(total), 0)
                        ).select_from(table)
                    )
                ).one()
                stats[f"{table.name}_rows"] = int(row[0])
                stats[f"{table.name}_bytes"] = int(row[1])
            if self.backend == "postgresql":
                size = await connection.scalar(
                    sa.text("SELECT pg_database_size(current_database())")
                )
            else:
                pages = await connection.scalar(sa.text("PRAGMA page_count"))
                page_size = await connection.scalar(sa.text("PRAGMA page_size"))
                size = int(pages or 0) * int(page_size or 0)
            stats["database_bytes"] = int(size or 0)
        return stats

    def _octets(self, column: sa.Column[Any]) -> sa.ColumnElement[Any]:
        if self.backend == "postgresql":
            return sa.func.octet_length(column)
        return sa.func.length(sa.cast(column, sa.LargeBinary))


def _drain(queue: asyncio.Queue[T]) -> list[T]:
    items: list[T] = []
    while not queue.empty():
        items.append(queue.get_nowait())
    return items


def _rough_size(value: object) -> int:
    """A cheap lower bound of a value's JSON size: the length of its top-level strings."""
    if isinstance(value, str):
        return len(value)
    if isinstance(value, dict):
        return sum(len(v) if isinstance(v, str) else 64 for v in value.values())
    if isinstance(value, list):
        return sum(len(v) if isinstance(v, str) else 64 for v in value)
    return 8
