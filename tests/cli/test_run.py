"""`llm-orchestrator run | schema | graph | providers` through the real CLI."""

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

import jsonschema
import pytest
import yaml
from typer.testing import CliRunner

from llm_orchestrator.cli.main import app
from tests.support.vendor_servers import FakeVendorServer, Reply, serve

runner = CliRunner()

CHAIN = """
name: cli-chain
inputs:
  topic: {type: string}
  count: {type: integer, default: 2}
steps:
  - {id: first, type: llm, prompt: "About {{ inputs.topic }} x{{ inputs.count }}"}
  - {id: second, type: llm, depends_on: [first], prompt: "{{ steps.first.text }}"}
"""


@pytest.fixture
def oa(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeVendorServer]:
    for server in serve("openai"):
        monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
        monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
        yield server


def write(tmp_path: Path, text: str, name: str = "wf.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_run_prints_json_result_and_progress(tmp_path: Path, oa: FakeVendorServer) -> None:
    path = write(tmp_path, CHAIN)
    result = runner.invoke(app, ["run", str(path), "--input", "topic=owls"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["status"] == "completed"
    assert data["outputs"]["first"]["text"] == "echo: About owls x2"
    assert data["outputs"]["second"]["text"] == "echo: echo: About owls x2"
    assert "✓ first" in result.stderr and "completed" in result.stderr


def test_run_text_output_and_input_file(tmp_path: Path, oa: FakeVendorServer) -> None:
    path = write(tmp_path, CHAIN)
    inputs = tmp_path / "in.json"
    inputs.write_text(json.dumps({"topic": "bats", "count": 5}))
    result = runner.invoke(
        app, ["run", str(path), "--input-file", str(inputs), "--output", "text", "--quiet"]
    )
    assert result.exit_code == 0, result.output
    assert "cli-chain: completed" in result.stdout
    assert "echo: About bats x5" in result.stdout
    assert result.stderr == ""


def test_failed_run_exits_one(tmp_path: Path, oa: FakeVendorServer) -> None:
    oa.script(Reply(status=401))
    path = write(tmp_path, CHAIN)
    result = runner.invoke(app, ["run", str(path), "-i", "topic=x"])
    assert result.exit_code == 1
    data = json.loads(result.stdout)
    assert data["status"] == "failed"
    assert data["errors"][0]["code"] == "provider_auth"
    assert data["steps"]["second"]["status"] == "skipped"


def test_bad_inputs_exit_two(tmp_path: Path, oa: FakeVendorServer) -> None:
    path = write(tmp_path, CHAIN)
    missing = runner.invoke(app, ["run", str(path)])
    assert missing.exit_code == 2
    assert "missing required input 'topic'" in missing.stderr
    wrong_type = runner.invoke(app, ["run", str(path), "-i", "topic=x", "-i", "count=many"])
    assert wrong_type.exit_code == 2
    assert "input 'count' must be of type integer" in wrong_type.stderr
    malformed = runner.invoke(app, ["run", str(path), "-i", "topic"])
    assert malformed.exit_code == 2
    assert oa.requests == []


def test_input_size_limit(tmp_path: Path, oa: FakeVendorServer) -> None:
    path = write(tmp_path, CHAIN)
    big = tmp_path / "big.json"
    big.write_text(json.dumps({"topic": "x" * (1024 * 1024 + 1)}))
    result = runner.invoke(app, ["run", str(path), "--input-file", str(big)])
    assert result.exit_code == 2
    assert "over the limit of 1048576" in result.stderr
    assert oa.requests == []


def test_invalid_workflow_is_not_run(tmp_path: Path, oa: FakeVendorServer) -> None:
    path = write(tmp_path, "name: x\nsteps: [{id: a, type: llm, prompt: '{{ steps.zz.text }}'}]")
    result = runner.invoke(app, ["run", str(path)])
    assert result.exit_code == 2
    assert "unknown step 'zz'" in result.stderr
    assert oa.requests == []


def test_dry_run_prints_layers_without_calling(tmp_path: Path, oa: FakeVendorServer) -> None:
    path = write(
        tmp_path,
        """
name: plan
steps:
  - {id: a, type: llm, prompt: x}
  - {id: b, type: llm, prompt: x, depends_on: [a]}
  - {id: c, type: llm, prompt: x, depends_on: [a]}
  - {id: d, type: llm, prompt: x, depends_on: [b, c]}
""",
    )
    result = runner.invoke(app, ["run", str(path), "--dry-run"])
    assert result.exit_code == 0, result.output
    plan = json.loads(result.stdout)
    assert [[n["id"] for n in layer] for layer in plan["layers"]] == [["a"], ["b", "c"], ["d"]]
    text = runner.invoke(app, ["run", str(path), "--dry-run", "--output", "text"])
    assert "layer 2: b (llm), c (llm)" in text.stdout
    assert oa.requests == []


def test_max_concurrency_flag(tmp_path: Path, oa: FakeVendorServer) -> None:
    oa.script(*[Reply(delay=0.3)] * 3)
    path = write(
        tmp_path,
        "name: p\nsteps: [{id: a, type: llm, prompt: a}, {id: b, type: llm, prompt: b},"
        " {id: c, type: llm, prompt: c}]",
    )
    started = time.perf_counter()
    result = runner.invoke(app, ["run", str(path), "--max-concurrency", "1", "-q"])
    assert result.exit_code == 0, result.output
    assert time.perf_counter() - started >= 0.9


def _yaml12(value: Any) -> Any:
    """Editors read YAML 1.2, where the key `on` is text; PyYAML (1.1) reads it as true."""
    if isinstance(value, dict):
        return {("on" if k is True else k): _yaml12(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_yaml12(v) for v in value]
    return value


def test_schema_validates_the_examples(tmp_path: Path) -> None:
    result = runner.invoke(app, ["schema"])
    assert result.exit_code == 0
    schema = json.loads(result.stdout)
    validator = jsonschema.Draft202012Validator(schema)
    examples = sorted(Path(__file__).parents[2].joinpath("examples").glob("*.yaml"))
    assert len(examples) >= 5
    for example in examples:
        errors = list(validator.iter_errors(_yaml12(yaml.safe_load(example.read_text()))))
        assert errors == [], (example.name, errors[:1])
    bad = {"name": "x", "steps": [{"id": "a", "type": "llm", "promt": "hi"}]}
    assert list(validator.iter_errors(bad))


def test_graph_formats(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
name: g
steps:
  - {id: a, type: llm, prompt: x}
  - id: fan
    type: parallel
    depends_on: [a]
    tasks: [{id: t1, type: llm, prompt: x}]
  - {id: z, type: llm, prompt: x, depends_on: [fan]}
""",
    )
    mermaid = runner.invoke(app, ["graph", str(path)])
    assert mermaid.exit_code == 0
    assert "graph TD" in mermaid.stdout and "a --> fan" in mermaid.stdout
    assert "t1 -.-> z" in mermaid.stdout
    dot = runner.invoke(app, ["graph", str(path), "--format", "dot"])
    assert dot.stdout.startswith('digraph "g" {') and '"fan" -> "t1";' in dot.stdout
    assert runner.invoke(app, ["graph", str(path), "--format", "png"]).exit_code == 2


def test_providers_lists_credentials(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "llm-orchestrator.yaml").write_text(
        "providers:\n  ollama: {type: openai_compatible, base_url: 'http://127.0.0.1:9/v1',"
        " default_model: llama3}\n"
    )
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant")
    monkeypatch.setenv("COLUMNS", "200")
    result = runner.invoke(app, ["providers"])
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "ollama" in out and "llama3" in out
    assert "missing (set OPENAI_API_KEY)" in out
    assert "found (ANTHROPIC_API_KEY)" in out


def test_ctrl_c_records_the_run_as_cancelled(tmp_path: Path, oa: FakeVendorServer) -> None:
    oa.script(Reply(delay=30))
    path = write(tmp_path, CHAIN)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "llm_orchestrator", "run", str(path), "-i", "topic=x"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert oa.wait_for_requests(1, timeout=30)
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=20)
    finally:
        proc.kill()
    assert proc.returncode == 130, stderr
    data = json.loads(stdout)
    assert data["status"] == "cancelled"
    assert data["steps"]["first"]["status"] == "cancelled"
    assert data["steps"]["second"]["status"] == "skipped"
    assert "Traceback" not in stderr


def test_streamed_tokens_show_in_the_progress(tmp_path: Path, oa: FakeVendorServer) -> None:
    path = write(
        tmp_path,
        "name: s\nsteps: [{id: talk, type: llm, stream: true, prompt: one two three}]",
    )
    result = runner.invoke(app, ["run", str(path)])
    assert result.exit_code == 0, result.output
    assert "… talk: echo: one two three" in result.stderr
    assert json.loads(result.stdout)["outputs"]["talk"]["text"] == "echo: one two three"
