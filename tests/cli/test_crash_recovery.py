"""kill -9 the CLI mid-run, then `llm-orchestrator recover`: completed steps are not repeated,
the in-flight step runs again, side effects are not duplicated."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.receiver import Reply as HookReply
from tests.support.receiver import Server
from tests.support.vendor_servers import FakeVendorServer, Reply, serve

FOUR_STEPS = """
name: four
steps:
  - {id: s1, type: llm, prompt: "one"}
  - {id: s2, type: llm, depends_on: [s1], prompt: "two after {{ steps.s1.text }}"}
  - {id: s3, type: llm, depends_on: [s2], prompt: "three after {{ steps.s2.text }}"}
  - {id: s4, type: llm, depends_on: [s3], prompt: "four after {{ steps.s3.text }}"}
"""


@pytest.fixture
def oa() -> Iterator[FakeVendorServer]:
    yield from serve("openai")


def cli_env(tmp_path: Path, server: FakeVendorServer, database_url: str | None) -> dict[str, str]:
    env = {
        **os.environ,
        "OPENAI_API_KEY": "sk-test",
        "OPENAI_BASE_URL": server.base_url,
        "LLMO_HOME": str(tmp_path / "home"),
        # a short lease so the dead run is recoverable within the test
        "LLMO_STATE__LEASE_SECONDS": "1",
        "PYTHONUNBUFFERED": "1",
    }
    if database_url:
        env["LLMO_DATABASE_URL"] = database_url
    return env


def cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "llm_orchestrator", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


def start_and_kill(path: Path, env: dict[str, str], wait: Any) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "llm_orchestrator", "run", str(path), "-q"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    try:
        assert wait(), "the run never reached the step to kill it in"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        proc.kill()
        proc.communicate(timeout=10)
    assert proc.returncode == -signal.SIGKILL
    time.sleep(1.0)  # the dead owner's lease (1 s) lapses


def recover_until_taken(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """`recover`, repeated while the lease has not lapsed yet on a slow machine."""
    deadline = time.monotonic() + 30
    while True:
        done = cli("recover", env=env)
        if "recovered 0 runs" not in done.stderr or time.monotonic() > deadline:
            return done
        time.sleep(0.5)


def prompts(server: FakeVendorServer) -> list[str]:
    return [r.json["messages"][-1]["content"] for r in server.requests if r.json]


def run_crash_test(tmp_path: Path, oa: FakeVendorServer, database_url: str | None) -> None:
    oa.script(Reply(text="A"), Reply(text="B"), Reply(delay=60))
    path = tmp_path / "four.yaml"
    path.write_text(FOUR_STEPS)
    env = cli_env(tmp_path, oa, database_url)
    start_and_kill(path, env, lambda: oa.wait_for_requests(3, timeout=60))

    listed = cli("runs", "list", "--json", env=env)
    assert listed.returncode == 0, listed.stderr
    (run,) = json.loads(listed.stdout)
    assert run["status"] == "running"

    recovered = recover_until_taken(env)
    assert recovered.returncode == 0, recovered.stderr
    assert "recovered 1 runs" in recovered.stderr

    shown = cli("runs", "show", run["id"], "--json", env=env)
    assert shown.returncode == 0, shown.stderr
    data = json.loads(shown.stdout)
    assert data["status"] == "completed"
    assert data["steps"]["s2"]["outputs"]["text"] == "B"
    assert data["steps"]["s4"]["outputs"]["text"].startswith("echo: four after echo: three")
    seen = prompts(oa)
    # steps 1 and 2 completed before the kill: sent exactly once; step 3 was in flight
    assert seen.count("one") == 1
    assert seen.count("two after A") == 1
    assert seen.count("three after B") == 2
    assert len(seen) == 5


def test_kill_9_then_recover_sqlite(tmp_path: Path, oa: FakeVendorServer) -> None:
    run_crash_test(tmp_path, oa, None)


def test_kill_9_then_recover_postgres(
    tmp_path: Path, oa: FakeVendorServer, postgres_url: str
) -> None:
    run_crash_test(tmp_path, oa, postgres_url)


def test_side_effect_in_flight_at_the_kill_is_resent_with_the_same_key(
    tmp_path: Path, oa: FakeVendorServer
) -> None:
    with Server() as hook:
        hook.replies.extend([HookReply(delay=60)])
        path = tmp_path / "hook.yaml"
        path.write_text(
            f"""
name: hook
steps:
  - {{id: s1, type: llm, prompt: "one"}}
  - id: notify
    type: action
    depends_on: [s1]
    action: webhook
    url: "{hook.url}/events"
    payload: {{text: "{{{{ steps.s1.text }}}}"}}
  - {{id: s3, type: llm, depends_on: [notify], prompt: "after"}}
"""
        )
        env = cli_env(tmp_path, oa, None)
        # killed after the receiver got the request (the claim is recorded) and before the
        # reply (so no receipt)
        start_and_kill(path, env, lambda: hook.received.wait(60))
        recovered = recover_until_taken(env)
        assert recovered.returncode == 0, recovered.stderr
        keys = [seen.headers["idempotency-key"] for seen in hook.requests]
        assert len(keys) == 2 and len(set(keys)) == 1
        again = cli("recover", env=env)
        assert "recovered 0 runs" in again.stderr
        assert len(hook.requests) == 2
    assert prompts(oa).count("one") == 1
