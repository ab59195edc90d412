"""`llm-orchestrator runs ...`, `recover` and `db ...`: run history and the state database."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from llm_orchestrator.cli.common import EXIT_FAILED, EXIT_INVALID, fail, settings_from_cli
from llm_orchestrator.durable import from_stored
from llm_orchestrator.engine.result import RunResult, RunStatus
from llm_orchestrator.exceptions import OrchestratorError, WorkflowValidationError
from llm_orchestrator.orchestrator import Orchestrator, close_shared_clients, load_workflow
from llm_orchestrator.state import migrate, open_store
from llm_orchestrator.state.models import RunState, StoredRun
from llm_orchestrator.state.store import StateStore

runs_app = typer.Typer(
    help="List, inspect, resume, replay and clean up runs.", no_args_is_help=True
)
db_app = typer.Typer(help="The state database: migrations.", no_args_is_help=True)

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)

T = TypeVar("T")

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhdw])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_age(text: str) -> timedelta:
    """`30d`, `12h`, `15m`, `90s`, `2w`."""
    match = _DURATION.match(text.strip())
    if match is None:
        raise typer.BadParameter(
            f"{text!r}: write a duration like 30d, 12h, 15m", param_hint="'--older-than'"
        )
    return timedelta(seconds=float(match.group(1)) * _UNITS[match.group(2)])


def parse_since(text: str) -> datetime:
    """A duration back from now (`2h`) or an ISO timestamp."""
    try:
        return datetime.now(UTC) - parse_age(text)
    except typer.BadParameter:
        pass
    try:
        when = datetime.fromisoformat(text)
    except ValueError as exc:
        raise typer.BadParameter(
            f"{text!r}: write 2h, 3d or an ISO timestamp", param_hint="'--since'"
        ) from exc
    return when if when.tzinfo else when.replace(tzinfo=UTC)


async def _with_store(use: Callable[[StateStore], Awaitable[T]]) -> T:
    store = await open_store(settings_from_cli())
    try:
        return await use(store)
    finally:
        await store.close()


async def _with_orchestrator(use: Callable[[Orchestrator], Awaitable[T]]) -> T:
    settings = settings_from_cli()
    store = await open_store(settings)
    orch = Orchestrator(settings, store=store, observers=_progress())
    try:
        return await use(orch)
    finally:
        await orch.aclose()
        await close_shared_clients()
        await store.close()


def _progress() -> list[Any]:
    from llm_orchestrator.cli.display import ProgressPrinter

    return [ProgressPrinter(err)]


def _call(coro: Awaitable[T]) -> T:
    try:
        return asyncio.run(coro)  # type: ignore[arg-type]
    except WorkflowValidationError as exc:
        for problem in exc.problems:
            err.print(f"[red]✗[/] {escape(str(problem))}")
        raise typer.Exit(EXIT_INVALID) from None
    except OrchestratorError as exc:
        fail(str(exc))


def _print_result(result: RunResult) -> None:
    out.print_json(json.dumps(result.to_dict(), default=str, ensure_ascii=False))
    if result.status is not RunStatus.COMPLETED:
        raise typer.Exit(EXIT_FAILED)


def _run_row(run: StoredRun) -> dict[str, Any]:
    return {
        "id": run.id,
        "workflow": run.workflow_name,
        "status": run.status.value,
        "user_id": run.user_id,
        "created_at": run.created_at.isoformat(),
        "finished_at": run.finished_at.isoformat() if run.finished_at else None,
        "tokens": run.input_tokens + run.output_tokens,
        "cost_usd": run.cost_usd,
        "parent_run_id": run.parent_run_id,
        "error": run.error,
    }


@runs_app.command("list")
def list_runs(
    status: Annotated[RunState | None, typer.Option(help="Only runs in this status.")] = None,
    workflow: Annotated[str | None, typer.Option(help="Only this workflow name.")] = None,
    since: Annotated[str | None, typer.Option(help="Created after: 2h, 3d or ISO.")] = None,
    limit: Annotated[int, typer.Option(min=1)] = 50,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Runs, newest first."""
    after = parse_since(since) if since else None
    runs = _call(
        _with_store(
            lambda s: s.list_runs(status=status, workflow=workflow, since=after, limit=limit)
        )
    )
    if as_json:
        out.print_json(json.dumps([_run_row(r) for r in runs]))
        return
    table = Table(title=f"runs ({len(runs)})")
    for column in ("id", "workflow", "status", "created", "tokens", "cost $"):
        table.add_column(column)
    for run in runs:
        table.add_row(
            run.id,
            escape(run.workflow_name),
            run.status.value,
            run.created_at.strftime("%Y-%m-%d %H:%M:%S"),
            str(run.input_tokens + run.output_tokens),
            f"{run.cost_usd:.6f}",
        )
    out.print(table)


@runs_app.command("show")
def show_run(
    run_id: str,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """A run's steps: status, attempts, timings, outputs, usage, cost, errors."""

    async def load(store: StateStore) -> tuple[StoredRun | None, list[Any], list[Any]]:
        run = await store.get_run(run_id)
        if run is None:
            return None, [], []
        return run, await store.get_steps(run_id), await store.list_checkpoints(run_id)

    run, steps, checkpoints = _call(_with_store(load))
    if run is None:
        fail(f"no run with id {run_id} (see `llm-orchestrator runs list`)")
    results = [from_stored(s) for s in steps]
    if as_json:
        body = _run_row(run)
        body["inputs"] = run.inputs
        body["steps"] = {r.step_id: r.to_dict() for r in results}
        body["checkpoints"] = [
            {"id": c.id, "step_id": c.step_id, "created_at": c.created_at.isoformat()}
            for c in checkpoints
        ]
        out.print_json(json.dumps(body, default=str, ensure_ascii=False))
        return
    out.print(
        f"[bold]{escape(run.workflow_name)}[/] {run.id} {escape(f'[{run.status.value}]')} "
        f"tokens {run.input_tokens}/{run.output_tokens} cost ${run.cost_usd:.6f}"
    )
    if run.error:
        out.print(f"[red]error:[/] {escape(str(run.error.get('message')))}")
    table = Table()
    for column in ("step", "type", "status", "attempts", "seconds", "tokens", "output / error"):
        table.add_column(column)
    for r in results:
        first = next(iter(r.outputs.values()), None) if r.outputs else None
        detail = r.error.message if r.error else (r.skip_reason or json.dumps(first, default=str))
        table.add_row(
            r.step_id,
            r.type,
            r.status.value,
            str(len(r.attempts)),
            f"{r.duration_seconds:.3f}",
            str(r.usage.total_tokens),
            escape(detail[:120]),
        )
    out.print(table)
    if checkpoints:
        out.print(f"checkpoints: {len(checkpoints)} (newest {checkpoints[0].id})")


@runs_app.command("resume")
def resume_run(
    run_id: str,
    workflow: Annotated[
        Path | None,
        typer.Option(help="A changed workflow file (completed steps must be unchanged)."),
    ] = None,
) -> None:
    """Continue a failed or interrupted run: only failed and not-yet-run steps execute."""
    changed = load_workflow(workflow) if workflow else None
    _print_result(_call(_with_orchestrator(lambda o: o.resume(run_id, changed))))


@runs_app.command("cancel")
def cancel_run(run_id: str) -> None:
    """Mark a run cancelled."""
    _call(_with_orchestrator(lambda o: o.cancel_run(run_id)))
    err.print(f"run {run_id} cancelled")


@runs_app.command("replay")
def replay_run(
    run_id: str,
    from_step: Annotated[str, typer.Option("--from", help="First step to run again.")],
) -> None:
    """A new run reusing the outputs upstream of STEP; STEP and its downstream run again."""
    _print_result(_call(_with_orchestrator(lambda o: o.replay(run_id, from_step))))


@runs_app.command("restore")
def restore_checkpoint(checkpoint_id: str) -> None:
    """A new run starting from a checkpoint (ids: `runs show RUN_ID --json`)."""
    _print_result(_call(_with_orchestrator(lambda o: o.restore(checkpoint_id))))


@runs_app.command("prune")
def prune_runs(
    older_than: Annotated[str, typer.Option("--older-than", help="e.g. 30d")],
) -> None:
    """Delete finished runs older than the given age, and expired checkpoints."""
    age = parse_age(older_than)
    settings = settings_from_cli()

    async def prune(store: StateStore) -> tuple[int, int]:
        runs = await store.delete_runs(finished_before=datetime.now(UTC) - age)
        checkpoints = await store.prune_checkpoints(
            keep_last=settings.state.checkpoint_keep_last,
            older_than=datetime.now(UTC) - timedelta(hours=settings.state.checkpoint_max_age_hours),
        )
        return runs, checkpoints

    runs, checkpoints = _call(_with_store(prune))
    err.print(f"deleted {runs} runs and {checkpoints} checkpoints")


@runs_app.command("purge")
def purge_user(user: Annotated[str, typer.Option("--user", help="The user id.")]) -> None:
    """Erase every run of a user and the outputs only they referenced."""
    count = _call(_with_store(lambda s: s.purge_user(user)))
    err.print(f"erased {count} runs of user {user}")


def recover_command() -> None:
    """Resume every interrupted run (its process died and its lease lapsed)."""
    results = _call(_with_orchestrator(lambda o: o.recover()))
    for result in results:
        out.print(f"{result.run_id} {result.workflow}: {result.status.value}")
    err.print(f"recovered {len(results)} runs")
    if any(r.status is not RunStatus.COMPLETED for r in results):
        raise typer.Exit(EXIT_FAILED)


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Migrate the state database to the newest schema."""
    url = settings_from_cli().database()
    _call(migrate.upgrade(url))
    revision = _call(migrate.current_revision(url))
    err.print(f"database at {migrate.display_url(url)} is at revision {revision}")


@db_app.command("current")
def db_current() -> None:
    """The database's schema revision, and the newest one this version knows."""
    url = settings_from_cli().database()
    current = _call(migrate.current_revision(url))
    head = migrate.head_revision()
    state = "up to date" if current == head else "needs `llm-orchestrator db upgrade`"
    out.print(f"{migrate.display_url(url)}: revision {current or 'none'} (head {head}): {state}")


@db_app.command("history")
def db_history() -> None:
    """The migrations this version ships, oldest first."""
    for revision, message in migrate.history():
        out.print(f"{revision}  {message}")
