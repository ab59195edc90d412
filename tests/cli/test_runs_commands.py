"""`llm-orchestrator runs ... | recover | db ...` through the real CLI (in-process), on
workflows of `probe` steps stored in the SQLite database under LLMO_HOME (and PostgreSQL)."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import pytest
from sqlalchemy.engine import make_url
from typer.testing import CliRunner, Result

from llm_orchestrator import Orchestrator, Settings, load_workflow
from llm_orchestrator.cli.main import app
from llm_orchestrator.engine.events import Event, StepStarted
from llm_orchestrator.engine.result import RunStatus
from llm_orchestrator.state import migrate
from llm_orchestrator.state.crypto import generate_key
from llm_orchestrator.state.models import RunState
from llm_orchestrator.state.sql import SQLStateStore
from tests.support.probe import CALLS

runner = CliRunner()

T = TypeVar("T")

CHAIN = """
name: chain3
inputs: {n: {type: integer, default: 1}}
steps:
  - {id: a, type: probe, value: "{{ inputs.n + 1 }}"}
  - {id: b, type: probe, depends_on: [a], value: "{{ steps.a.result * 10 }}"B_EXTRA}
  - {id: c, type: probe, depends_on: [b], value: "{{ steps.b.result }}!"}
"""

FAILING_B = ", fail_times: 9, error: auth, retry: {max_attempts: 1}"


def chain_text(b_extra: str = "") -> str:
    return CHAIN.replace("B_EXTRA", b_extra)


@pytest.fixture(autouse=True)
def _wide(monkeypatch: pytest.MonkeyPatch) -> None:
    """Rich tables and error boxes are not wrapped or cut at 80 columns."""
    monkeypatch.setenv("COLUMNS", "200")


@pytest.fixture
def failing(tmp_path: Path) -> Path:
    """The chain whose step `b` fails with a non-retryable auth error."""
    path = tmp_path / "failing.yaml"
    path.write_text(chain_text(FAILING_B))
    return path


@pytest.fixture
def fixed(tmp_path: Path) -> Path:
    """The same chain with the cause fixed: `b` succeeds; `a` is unchanged."""
    path = tmp_path / "fixed.yaml"
    path.write_text(chain_text())
    return path


def invoke(*args: str) -> Result:
    result = runner.invoke(app, list(args))
    # every outcome is an exit code with a message, never an uncaught exception
    assert result.exception is None or isinstance(result.exception, SystemExit), (
        f"{args}: {result.exception!r}\n{result.output}"
    )
    assert "Traceback" not in result.output
    return result


def run_cli(path: Path, *extra: str, expect: int = 0) -> str:
    """`run FILE` (quiet); returns the stored run id."""
    result = invoke("run", str(path), "-q", *extra)
    assert result.exit_code == expect, result.output
    run_id: str = json.loads(result.stdout)["run_id"]
    return run_id


def show_json(run_id: str) -> dict[str, Any]:
    result = invoke("runs", "show", run_id, "--json")
    assert result.exit_code == 0, result.output
    body: dict[str, Any] = json.loads(result.stdout)
    return body


def with_store(use: Callable[[SQLStateStore], Awaitable[T]]) -> T:
    """Use the CLI's database (Settings from the environment) directly, outside the CLI."""

    async def main() -> T:
        settings = Settings()
        store = SQLStateStore(settings.database(), settings.state)
        await store.open()
        try:
            return await use(store)
        finally:
            await store.close()

    return asyncio.run(main())


def store_run(run_id: str) -> Any:
    return with_store(lambda s: s.get_run(run_id))


def update_run(run_id: str, **fields: Any) -> None:
    with_store(lambda s: s.update_run(run_id, **fields))


def stored_steps(run_id: str) -> list[Any]:
    return with_store(lambda s: s.get_steps(run_id))


def called() -> list[str]:
    return [c.step_id for c in CALLS]


def table_rows(text: str) -> list[list[str]]:
    """The body rows of a Rich table, as lists of stripped cells."""
    return [
        [cell.strip() for cell in line.strip("│").split("│")]
        for line in text.splitlines()
        if line.startswith("│")
    ]


# -- runs list ---------------------------------------------------------------------------


def test_runs_list_table_json_and_filters(tmp_path: Path, failing: Path, fixed: Path) -> None:
    other = tmp_path / "other.yaml"
    other.write_text('name: "other [nightly]"\nsteps: [{id: only, type: probe, value: 1}]\n')
    failed_id = run_cli(failing, expect=1)
    completed_id = run_cli(fixed)
    other_id = run_cli(other)

    table = invoke("runs", "list")
    assert table.exit_code == 0, table.output
    assert "runs (3)" in table.stdout
    rows = {row[0]: row for row in table_rows(table.stdout)}
    assert rows[failed_id][1:3] == ["chain3", "failed"]
    assert rows[completed_id][1:3] == ["chain3", "completed"]
    # a name that looks like Rich markup is shown as written
    assert rows[other_id][1:3] == ["other [nightly]", "completed"]

    listed = invoke("runs", "list", "--json")
    assert listed.exit_code == 0, listed.output
    data = json.loads(listed.stdout)
    assert [r["id"] for r in data] == [other_id, completed_id, failed_id]  # newest first
    by_id = {r["id"]: r for r in data}
    assert by_id[failed_id]["status"] == "failed"
    assert by_id[failed_id]["error"]["code"] == "provider_auth"
    assert by_id[failed_id]["finished_at"] is not None
    assert by_id[completed_id]["error"] is None

    def ids(*args: str) -> list[str]:
        result = invoke("runs", "list", "--json", *args)
        assert result.exit_code == 0, result.output
        return [r["id"] for r in json.loads(result.stdout)]

    assert ids("--status", "failed") == [failed_id]
    assert ids("--status", "completed") == [other_id, completed_id]
    assert ids("--status", "running") == []
    assert ids("--workflow", "chain3") == [completed_id, failed_id]
    assert ids("--workflow", "other [nightly]") == [other_id]
    assert ids("--workflow", "chain3", "--status", "failed") == [failed_id]
    assert ids("--since", "1h") == [other_id, completed_id, failed_id]
    in_an_hour = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    assert ids("--since", in_an_hour) == []
    assert ids("--limit", "1") == [other_id]


@pytest.mark.parametrize("value", ["bogus", "10y", "-3d"])
def test_runs_list_bad_since_exits_two(failing: Path, value: str) -> None:
    run_cli(failing, expect=1)
    result = invoke("runs", "list", "--since", value)
    assert result.exit_code == 2
    assert f"'{value}': write 2h, 3d or an ISO timestamp" in result.stderr
    assert result.stdout == ""


# -- runs show ---------------------------------------------------------------------------


def test_runs_show_table_and_json(failing: Path) -> None:
    run_id = run_cli(failing, expect=1)

    shown = invoke("runs", "show", run_id)
    assert shown.exit_code == 0, shown.output
    header = shown.stdout.splitlines()[0]
    assert header == f"chain3 {run_id} [failed] tokens 0/0 cost $0.000000"
    assert "error: probe: bad key" in shown.stdout
    rows = {row[0]: row for row in table_rows(shown.stdout)}
    assert set(rows) == {"a", "b", "c"}
    # step, type, status, attempts, seconds, tokens, output / error
    assert rows["a"][1:4] == ["probe", "completed", "1"] and rows["a"][6] == "2"
    assert rows["b"][1:4] == ["probe", "failed", "1"] and rows["b"][6] == "probe: bad key"
    assert rows["c"][2:4] == ["skipped", "0"]
    assert "the run stopped before this step could start" in rows["c"][6]

    data = show_json(run_id)
    assert data["id"] == run_id and data["status"] == "failed" and data["workflow"] == "chain3"
    assert data["inputs"] == {}
    steps = data["steps"]
    assert steps["a"]["status"] == "completed" and steps["a"]["outputs"] == {"result": 2}
    assert len(steps["a"]["attempts"]) == 1
    assert steps["b"]["status"] == "failed"
    assert steps["b"]["error"]["code"] == "provider_auth"
    assert steps["b"]["attempts"][0]["error"]["message"] == "probe: bad key"
    assert steps["c"]["status"] == "skipped"
    stored = with_store(lambda s: s.list_checkpoints(run_id))
    assert [c["id"] for c in data["checkpoints"]] == [c.id for c in stored]
    assert [c["step_id"] for c in data["checkpoints"]] == ["a"]
    assert f"checkpoints: 1 (newest {stored[0].id})" in shown.stdout


def test_runs_show_unknown_id_exits_two() -> None:
    result = invoke("runs", "show", "no-such-run-42")
    assert result.exit_code == 2
    assert "no run with id no-such-run-42" in result.stderr
    assert result.stdout == ""


# -- runs resume -------------------------------------------------------------------------


def test_resume_a_failed_run_with_the_cause_fixed(failing: Path, fixed: Path) -> None:
    run_id = run_cli(failing, expect=1)
    assert called() == ["a", "b"]
    CALLS.clear()

    resumed = invoke("runs", "resume", run_id, "--workflow", str(fixed))
    assert resumed.exit_code == 0, resumed.output
    data = json.loads(resumed.stdout)
    assert data["run_id"] == run_id and data["status"] == "completed"
    assert data["outputs"]["c"] == {"result": "20!"}
    assert called() == ["b", "c"]  # `a` was restored, not run again
    run = store_run(run_id)
    assert run.status is RunState.COMPLETED and run.error is None and run.owner is None

    again = invoke("runs", "resume", run_id)
    assert again.exit_code == 2
    assert f"run {run_id} already completed" in again.stderr
    assert called() == ["b", "c"]


def test_resume_refuses_a_changed_completed_step(
    tmp_path: Path, failing: Path, fixed: Path
) -> None:
    run_id = run_cli(failing, expect=1)
    changed = tmp_path / "changed.yaml"
    changed.write_text(fixed.read_text().replace("inputs.n + 1", "inputs.n + 2"))
    CALLS.clear()

    refused = invoke("runs", "resume", run_id, "--workflow", str(changed))
    assert refused.exit_code == 2
    assert "completed steps changed since the run started: a;" in refused.stderr
    assert f"runs replay {run_id} --from a" in refused.stderr
    assert refused.stdout == ""
    assert called() == []
    assert store_run(run_id).status is RunState.FAILED


def test_resume_an_unknown_run_exits_two() -> None:
    result = invoke("runs", "resume", "nope-1")
    assert result.exit_code == 2
    assert "no run with id nope-1" in result.stderr


# -- runs replay / restore ---------------------------------------------------------------


def test_replay_from_a_step_is_a_new_run(fixed: Path) -> None:
    first = run_cli(fixed, "-i", "n=2")
    CALLS.clear()

    replayed = invoke("runs", "replay", first, "--from", "b")
    assert replayed.exit_code == 0, replayed.output
    data = json.loads(replayed.stdout)
    assert data["status"] == "completed" and data["run_id"] != first
    assert data["outputs"]["c"] == {"result": "30!"}
    assert called() == ["b", "c"]
    child = store_run(data["run_id"])
    assert child.parent_run_id == first and child.status is RunState.COMPLETED
    assert child.inputs == {"n": 2}
    assert show_json(data["run_id"])["steps"]["a"]["outputs"] == {"result": 3}
    assert store_run(first).status is RunState.COMPLETED


def test_replay_of_an_unknown_step_or_run_exits_two(fixed: Path) -> None:
    first = run_cli(fixed)
    unknown_step = invoke("runs", "replay", first, "--from", "zz")
    assert unknown_step.exit_code == 2
    assert "workflow 'chain3' has no step 'zz'" in unknown_step.stderr
    unknown_run = invoke("runs", "replay", "nope-2", "--from", "a")
    assert unknown_run.exit_code == 2
    assert "no run with id nope-2" in unknown_run.stderr
    assert len(with_store(lambda s: s.list_runs())) == 1


def test_replay_that_fails_again_exits_one(failing: Path) -> None:
    first = run_cli(failing, expect=1)
    replayed = invoke("runs", "replay", first, "--from", "b")
    assert replayed.exit_code == 1
    data = json.loads(replayed.stdout)
    assert data["status"] == "failed" and data["run_id"] != first
    assert store_run(data["run_id"]).status is RunState.FAILED


def test_restore_a_checkpoint_from_runs_show(fixed: Path) -> None:
    first = run_cli(fixed, "-i", "n=3")
    checkpoints = show_json(first)["checkpoints"]
    assert [c["step_id"] for c in checkpoints] == ["c", "b", "a"]
    after_a = next(c["id"] for c in checkpoints if c["step_id"] == "a")
    CALLS.clear()

    restored = invoke("runs", "restore", after_a)
    assert restored.exit_code == 0, restored.output
    data = json.loads(restored.stdout)
    assert data["status"] == "completed" and data["run_id"] != first
    assert data["outputs"]["c"] == {"result": "40!"}
    assert called() == ["b", "c"]
    assert store_run(data["run_id"]).parent_run_id == first

    missing = invoke("runs", "restore", "no-such-checkpoint")
    assert missing.exit_code == 2
    assert "no checkpoint with id no-such-checkpoint" in missing.stderr


# -- runs cancel -------------------------------------------------------------------------


def test_cancel_a_running_run_then_a_finished_one(failing: Path) -> None:
    run_id = run_cli(failing, expect=1)
    update_run(
        run_id,
        status=RunState.RUNNING,
        owner="other-host:1:live",
        lease_expires_at=datetime.now(UTC) + timedelta(minutes=5),
    )

    cancelled = invoke("runs", "cancel", run_id)
    assert cancelled.exit_code == 0, cancelled.output
    assert f"run {run_id} cancelled" in cancelled.stderr
    run = store_run(run_id)
    assert run.status is RunState.CANCELLED
    assert run.finished_at is not None and run.owner is None

    again = invoke("runs", "cancel", run_id)
    assert again.exit_code == 2
    assert f"run {run_id} already ended (cancelled)" in again.stderr

    unknown = invoke("runs", "cancel", "nope-3")
    assert unknown.exit_code == 2
    assert "no run with id nope-3" in unknown.stderr


def test_cancel_a_completed_run_exits_two(fixed: Path) -> None:
    run_id = run_cli(fixed)
    result = invoke("runs", "cancel", run_id)
    assert result.exit_code == 2
    assert "already ended (completed)" in result.stderr
    assert store_run(run_id).status is RunState.COMPLETED


# -- runs prune / purge ------------------------------------------------------------------


def test_prune_deletes_only_old_finished_runs(failing: Path, fixed: Path) -> None:
    old_id = run_cli(failing, expect=1)
    recent_id = run_cli(fixed)

    fresh = invoke("runs", "prune", "--older-than", "30d")
    assert fresh.exit_code == 0, fresh.output
    assert "deleted 0 runs and 0 checkpoints" in fresh.stderr
    assert store_run(old_id) is not None and store_run(recent_id) is not None

    update_run(old_id, finished_at=datetime.now(UTC) - timedelta(days=40))
    pruned = invoke("runs", "prune", "--older-than", "30d")
    assert pruned.exit_code == 0, pruned.output
    assert "deleted 1 runs and 0 checkpoints" in pruned.stderr
    assert store_run(old_id) is None
    assert stored_steps(old_id) == []
    assert with_store(lambda s: s.list_checkpoints(old_id)) == []
    assert store_run(recent_id).status is RunState.COMPLETED
    assert len(stored_steps(recent_id)) == 3


def test_prune_removes_expired_checkpoints_past_keep_last(
    fixed: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_id = run_cli(fixed)
    assert len(with_store(lambda s: s.list_checkpoints(run_id))) == 3
    monkeypatch.setenv("LLMO_STATE__CHECKPOINT_KEEP_LAST", "1")
    monkeypatch.setenv("LLMO_STATE__CHECKPOINT_MAX_AGE_HOURS", "0.000001")
    result = invoke("runs", "prune", "--older-than", "30d")
    assert result.exit_code == 0, result.output
    assert "deleted 0 runs and 2 checkpoints" in result.stderr
    (kept,) = with_store(lambda s: s.list_checkpoints(run_id))
    assert kept.step_id == "c"


@pytest.mark.parametrize("value", ["30", "thirty days", "30y", ""])
def test_prune_bad_duration_exits_two(fixed: Path, value: str) -> None:
    run_id = run_cli(fixed)
    update_run(run_id, finished_at=datetime.now(UTC) - timedelta(days=400))
    result = invoke("runs", "prune", "--older-than", value)
    assert result.exit_code == 2
    assert f"'{value}': write a duration like 30d, 12h, 15m" in result.stderr
    assert store_run(run_id) is not None


def test_purge_erases_one_users_runs(fixed: Path) -> None:
    workflow = load_workflow(fixed)

    async def runs_of_users(store: SQLStateStore) -> dict[str, list[str]]:
        orch = Orchestrator(Settings(), store=store)
        try:
            made: dict[str, list[str]] = {"u1": [], "u2": []}
            for user in ("u1", "u2", "u1"):
                result = await orch.run(workflow, {"n": 1}, user_id=user)
                assert result.status is RunStatus.COMPLETED, result.errors
                made[user].append(result.run_id)
            return made
        finally:
            await orch.aclose()

    made = with_store(runs_of_users)
    listed = json.loads(invoke("runs", "list", "--json").stdout)
    assert sorted(r["user_id"] for r in listed) == ["u1", "u1", "u2"]

    purged = invoke("runs", "purge", "--user", "u1")
    assert purged.exit_code == 0, purged.output
    assert "erased 2 runs of user u1" in purged.stderr
    for run_id in made["u1"]:
        assert store_run(run_id) is None
        assert stored_steps(run_id) == []
    (survivor,) = made["u2"]
    assert store_run(survivor).user_id == "u2"
    assert show_json(survivor)["steps"]["c"]["outputs"] == {"result": "20!"}

    again = invoke("runs", "purge", "--user", "u1")
    assert again.exit_code == 0
    assert "erased 0 runs of user u1" in again.stderr


# -- recover -----------------------------------------------------------------------------


def test_recover_with_nothing_to_recover(fixed: Path) -> None:
    run_cli(fixed)
    result = invoke("recover")
    assert result.exit_code == 0, result.output
    assert "recovered 0 runs" in result.stderr
    assert result.stdout == ""


def _interrupted_after_a(path: Path) -> str:
    """A run of `path` stopped while `b` was in flight, made to look as if its process died
    then: still `running`, owned by a dead process whose lease lapsed."""
    workflow = load_workflow(path)

    async def start(store: SQLStateStore) -> str:
        cancel = asyncio.Event()

        def stop_during_b(event: Event) -> None:
            if isinstance(event, StepStarted) and event.step_id == "b":
                cancel.set()

        orch = Orchestrator(Settings(), store=store, observers=[stop_during_b])
        try:
            result = await orch.run(workflow, {"n": 1}, cancel=cancel)
        finally:
            await orch.aclose()
        assert result.status is RunStatus.CANCELLED
        assert result.steps["a"].status.value == "completed"
        await store.update_run(
            result.run_id,
            status=RunState.RUNNING,
            owner="dead-host:4242:gone",
            lease_expires_at=datetime.now(UTC) - timedelta(minutes=1),
        )
        return result.run_id

    return with_store(start)


def test_recover_completes_an_interrupted_run(tmp_path: Path, failing: Path) -> None:
    slow = tmp_path / "slow.yaml"
    slow.write_text(chain_text(", sleep: 0.2"))
    run_id = _interrupted_after_a(slow)
    # a run whose owner is alive (lease not lapsed) is not taken over
    live_id = run_cli(failing, expect=1)
    update_run(
        live_id,
        status=RunState.RUNNING,
        owner="live-host:1:here",
        lease_expires_at=datetime.now(UTC) + timedelta(minutes=5),
    )
    CALLS.clear()

    result = invoke("recover")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [f"{run_id} chain3: completed"]
    assert "recovered 1 runs" in result.stderr
    assert called() == ["b", "c"]
    run = store_run(run_id)
    assert run.status is RunState.COMPLETED and run.owner is None
    assert show_json(run_id)["steps"]["c"]["outputs"] == {"result": "20!"}
    live = store_run(live_id)
    assert live.status is RunState.RUNNING and live.owner == "live-host:1:here"


def test_recovered_run_that_fails_again_exits_one(failing: Path) -> None:
    run_id = run_cli(failing, expect=1)
    update_run(
        run_id,
        status=RunState.RUNNING,
        owner="dead-host:4242:gone",
        lease_expires_at=datetime.now(UTC) - timedelta(minutes=1),
    )
    CALLS.clear()

    result = invoke("recover")
    assert result.exit_code == 1
    assert result.stdout.splitlines() == [f"{run_id} chain3: failed"]
    assert "recovered 1 runs" in result.stderr
    assert called() == ["b"]  # `a` restored; `b` fails again with the stored definition
    run = store_run(run_id)
    assert run.status is RunState.FAILED and run.owner is None
    assert run.error is not None and run.error["code"] == "provider_auth"

    again = invoke("recover")
    assert again.exit_code == 0
    assert "recovered 0 runs" in again.stderr


# -- db ----------------------------------------------------------------------------------

DB_CURRENT = re.compile(
    r"^(?P<url>\S+): revision (?P<rev>\S+) \(head (?P<head>\S+)\): (?P<state>.+)$"
)


def db_current() -> re.Match[str]:
    result = invoke("db", "current")
    assert result.exit_code == 0, result.output
    match = DB_CURRENT.match(result.stdout.strip())
    assert match is not None, result.stdout
    return match


def test_db_current_and_upgrade_on_a_fresh_sqlite_file(tmp_path: Path) -> None:
    path = tmp_path / "home" / "state.db"
    assert not path.exists()
    head = migrate.head_revision()

    before = db_current()
    assert before["url"] == f"sqlite+aiosqlite:///{path}"
    assert before["rev"] == "none" and before["head"] == head
    assert before["state"] == "needs `llm-orchestrator db upgrade`"
    assert not path.exists()  # reading the revision creates nothing

    upgraded = invoke("db", "upgrade")
    assert upgraded.exit_code == 0, upgraded.output
    assert f"is at revision {head}" in upgraded.stderr
    assert path.is_file()

    after = db_current()
    assert after["rev"] == head and after["state"] == "up to date"

    twice = invoke("db", "upgrade")
    assert twice.exit_code == 0, twice.output
    assert db_current()["state"] == "up to date"


def test_db_history_lists_the_migrations() -> None:
    result = invoke("db", "history")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert [line.split()[0] for line in lines] == ["0001", "0002"]
    assert "initial state schema" in lines[0]
    assert "parent_run_id" in lines[1]


def test_db_upgrade_and_current_on_postgres(
    empty_postgres_url: str, monkeypatch: pytest.MonkeyPatch, fixed: Path
) -> None:
    monkeypatch.setenv("LLMO_DATABASE_URL", empty_postgres_url)
    password = make_url(empty_postgres_url).password
    assert password
    head = migrate.head_revision()

    before = invoke("db", "current")
    assert before.exit_code == 0, before.output
    assert f"revision none (head {head}): needs `llm-orchestrator db upgrade`" in before.stdout
    assert before.stdout.startswith("postgresql+asyncpg://") and "***" in before.stdout
    assert password not in before.output

    # the store refuses a database without the schema, and says how to fix it
    refused = invoke("runs", "list")
    assert refused.exit_code == 2
    assert "has no llm-orchestrator schema" in refused.stderr
    assert "llm-orchestrator db upgrade" in refused.stderr
    assert password not in refused.output

    upgraded = invoke("db", "upgrade")
    assert upgraded.exit_code == 0, upgraded.output
    assert f"is at revision {head}" in upgraded.stderr
    assert password not in upgraded.output

    after = invoke("db", "current")
    assert after.exit_code == 0, after.output
    assert f"revision {head} (head {head}): up to date" in after.stdout

    run_id = run_cli(fixed)
    listed = invoke("runs", "list", "--json")
    assert listed.exit_code == 0, listed.output
    assert [r["id"] for r in json.loads(listed.stdout)] == [run_id]


def test_runs_commands_on_postgres(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch, failing: Path, fixed: Path
) -> None:
    monkeypatch.setenv("LLMO_DATABASE_URL", postgres_url)
    run_id = run_cli(failing, expect=1)
    CALLS.clear()
    resumed = invoke("runs", "resume", run_id, "--workflow", str(fixed))
    assert resumed.exit_code == 0, resumed.output
    assert called() == ["b", "c"]
    data = show_json(run_id)
    assert data["status"] == "completed" and data["steps"]["c"]["outputs"] == {"result": "20!"}
    assert not (Path("home") / "state.db").exists()


# -- encryption at rest ------------------------------------------------------------------


def test_encrypted_runs_need_the_key(fixed: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLMO_ENCRYPTION_KEY", generate_key())
    run_id = run_cli(fixed, "-i", "n=5")
    data = show_json(run_id)
    assert data["inputs"] == {"n": 5}
    assert data["steps"]["c"]["outputs"] == {"result": "60!"}

    monkeypatch.delenv("LLMO_ENCRYPTION_KEY")
    without = invoke("runs", "show", run_id)
    assert without.exit_code == 2
    assert "LLMO_ENCRYPTION_KEY" in without.stderr
    assert "no encryption key is configured" in without.stderr
    assert without.stdout == ""

    monkeypatch.setenv("LLMO_ENCRYPTION_KEY", generate_key())
    wrong = invoke("runs", "show", run_id, "--json")
    assert wrong.exit_code == 2
    assert "encrypted with a key that is not configured" in wrong.stderr
    assert "LLMO_ENCRYPTION_KEY" in wrong.stderr


def test_run_recovers_interrupted_runs_first_when_configured(
    tmp_path: Path, fixed: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    slow = tmp_path / "slow.yaml"
    slow.write_text(chain_text(", sleep: 0.2"))
    run_id = _interrupted_after_a(slow)
    monkeypatch.setenv("LLMO_STATE__RECOVER_ON_START", "true")
    result = invoke("run", str(fixed), "-q")
    assert result.exit_code == 0, result.output
    assert f"recovered run {run_id}: completed" in result.stderr
    assert store_run(run_id).status is RunState.COMPLETED
