"""`llm-orchestrator validate`: every class of problem, with exit code and message."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from llm_orchestrator.cli.main import app

runner = CliRunner()


def validate(tmp_path: Path, text: str, name: str = "wf.yaml") -> Any:
    path = tmp_path / name
    path.write_text(text)
    return runner.invoke(app, ["validate", str(path)])


def test_valid_workflow_exits_zero(tmp_path: Path) -> None:
    result = validate(
        tmp_path,
        """
name: ok
steps:
  - {id: a, type: llm, provider: local, prompt: "hi"}
  - {id: b, type: llm, provider: local, depends_on: [a], prompt: "{{ steps.a.text }}"}
""",
    )
    assert result.exit_code == 0, result.output
    assert "valid (2 steps)" in result.output


def test_yaml_syntax_error_names_the_line(tmp_path: Path) -> None:
    result = validate(tmp_path, "name: bad\nsteps:\n  - id: a\n    type: [llm\n")
    assert result.exit_code == 2
    assert "wf.yaml:" in result.output and "invalid YAML" in result.output
    assert "Traceback" not in result.output


def test_json_syntax_error_names_the_line(tmp_path: Path) -> None:
    result = validate(tmp_path, '{"name": "x",\n "steps": [,]}', name="wf.json")
    assert result.exit_code == 2
    assert "wf.json:2" in result.output and "invalid JSON" in result.output


def test_misspelled_key_gets_a_suggestion_with_line(tmp_path: Path) -> None:
    result = validate(
        tmp_path,
        """name: typo
steps:
  - id: a
    type: llm
    provider: local
    promt: hi
""",
    )
    assert result.exit_code == 2
    assert "wf.yaml:6" in result.output
    assert "unknown key 'promt'" in result.output
    assert "did you mean 'prompt'?" in result.output
    assert "missing required field 'prompt'" in result.output


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    result = validate(
        tmp_path,
        """name: many
steps:
  - {id: a, type: llm, provider: local, prompt: hi, depend_on: [b]}
  - {id: a, type: transform, function: concat, inputs: ["inputs.x"]}
  - {id: c, type: lmm, prompt: hi}
  - {id: d, type: llm, provider: local, prompt: hi, depends_on: [zz]}
""",
    )
    assert result.exit_code == 2
    out = result.output
    assert "did you mean 'depends_on'?" in out
    assert "unknown step type 'lmm'" in out and "did you mean 'llm'?" in out
    assert "depends on unknown step 'zz'" in out


def test_duplicate_ids_and_cycles(tmp_path: Path) -> None:
    result = validate(
        tmp_path,
        """name: cyc
steps:
  - {id: a, type: llm, provider: local, prompt: hi, depends_on: [c]}
  - {id: b, type: llm, provider: local, prompt: hi, depends_on: [a]}
  - {id: c, type: llm, provider: local, prompt: hi, depends_on: [b]}
  - {id: b, type: llm, provider: local, prompt: hi}
""",
    )
    assert result.exit_code == 2
    assert "duplicate step id 'b' (first defined on line 4)" in result.output
    assert "wf.yaml:6" in result.output
    assert "dependency cycle: " in result.output
    cycle = result.output.split("dependency cycle: ")[1].split(" (fix")[0].strip()
    nodes = cycle.split(" -> ")
    assert nodes[0] == nodes[-1] and set(nodes) == {"a", "b", "c"}


def test_template_references_are_checked(tmp_path: Path) -> None:
    result = validate(
        tmp_path,
        """name: refs
steps:
  - {id: fetch, type: llm, provider: local, prompt: hi, output: [body, meta]}
  - {id: summarize, type: llm, provider: local, depends_on: [fetch],
     prompt: "{{ steps.fetch.text }}"}
  - {id: early, type: llm, provider: local, prompt: "{{ steps.summarize.text }}"}
  - {id: ghost, type: llm, provider: local, prompt: "{{ steps.nobody.text }} {{ bogus }}"}
""",
    )
    assert result.exit_code == 2
    out = result.output
    assert (
        "template refers to steps.fetch.text, but step 'fetch' declares outputs [body, meta]" in out
    )
    assert "not upstream of 'early'" in out and "add 'summarize' to depends_on" in out
    assert "unknown step 'nobody'" in out
    assert "template refers to 'bogus'" in out


def test_unknown_provider_and_missing_key(tmp_path: Path) -> None:
    result = validate(
        tmp_path,
        """name: providers
steps:
  - {id: a, type: llm, provider: nonesuch, prompt: hi}
  - {id: b, type: llm, provider: openai, prompt: hi}
  - {id: c, type: llm, provider: anthropic, prompt: hi, fallback: ["openai:gpt-4o"]}
""",
    )
    assert result.exit_code == 2
    out = result.output
    assert "nonesuch" in out
    assert "OPENAI_API_KEY" in out and "ANTHROPIC_API_KEY" in out
    assert "Traceback" not in out


def test_missing_sdk_names_the_pip_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec

    def fake(name: str, *args: Any) -> Any:
        return None if name == "llama_cpp" else real(name, *args)

    monkeypatch.setattr(importlib.util, "find_spec", fake)
    result = validate(tmp_path, "name: x\nsteps: [{id: a, type: llm, provider: local, prompt: hi}]")
    assert result.exit_code == 2
    assert "llm-orchestrator[local]" in result.output


def test_limits(tmp_path: Path) -> None:
    steps = "\n".join(
        f"  - {{id: s{i}, type: llm, provider: local, prompt: hi}}" for i in range(101)
    )
    result = validate(tmp_path, f"name: big\nsteps:\n{steps}\n")
    assert result.exit_code == 2
    assert "101 steps, more than the limit of 100" in result.output
    long_prompt = "x" * 50_001
    result = validate(
        tmp_path,
        f"name: long\nsteps: [{{id: a, type: llm, provider: local, prompt: {long_prompt}}}]",
    )
    assert result.exit_code == 2
    assert "over the limit of 50000" in result.output


def test_limits_are_configurable(tmp_path: Path) -> None:
    (tmp_path / "llm-orchestrator.yaml").write_text("limits: {max_steps: 1}\n")
    result = validate(
        tmp_path,
        "name: two\nsteps: [{id: a, type: llm, provider: local, prompt: hi},"
        " {id: b, type: llm, provider: local, prompt: hi}]",
    )
    assert result.exit_code == 2
    assert "more than the limit of 1" in result.output


def test_several_files_each_reported(tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text("name: g\nsteps: [{id: a, type: llm, provider: local, prompt: hi}]")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: b\nsteps: [{id: a, type: nope}]")
    missing = tmp_path / "missing.yaml"
    result = runner.invoke(app, ["validate", str(good), str(bad), str(missing)])
    assert result.exit_code == 2
    assert "good.yaml: valid" in result.output
    assert "bad.yaml" in result.output and "missing.yaml" in result.output
    assert "2 files are invalid" in result.output


def test_bad_config_file_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "llm-orchestrator.yaml").write_text("providers: {x: {type: nope}}\n")
    result = validate(tmp_path, "name: g\nsteps: [{id: a, type: llm, provider: local, prompt: hi}]")
    assert result.exit_code == 2
    assert "llm-orchestrator.yaml" in result.output and "providers.x.type" in result.output


def test_console_script_exit_code_without_traceback(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("name: b\nsteps: [{id: a, type: llm, provider: local, prompt: hi, x: 1}]")
    proc = subprocess.run(
        [sys.executable, "-m", "llm_orchestrator", "validate", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "unknown key 'x'" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_undeclared_input_is_reported_when_inputs_are_declared(tmp_path: Path) -> None:
    result = validate(
        tmp_path,
        """name: inputs
inputs:
  topic: {type: string}
steps:
  - {id: a, type: llm, provider: local, prompt: "{{ inputs.topc }} {{ input['topic'] }}"}
""",
    )
    assert result.exit_code == 2
    assert "template refers to inputs.topc, but the workflow declares inputs [topic]" in (
        result.output
    )
    assert "did you mean 'topic'?" in result.output
    assert "input['topic']" not in result.output


def test_lines_stay_right_after_an_invalid_step(tmp_path: Path) -> None:
    """An invalid step is left out of the later checks; the steps after it keep their own
    line numbers, and its id still counts as known."""
    result = validate(
        tmp_path,
        """name: t
steps:
  - id: a
    type: llm
    prompt: hi
    bogus: 1
  - id: b
    type: transform
    function: nope
  - id: c
    type: llm
    prompt: "{{ steps.zzz.text }}"
""",
    )
    assert result.exit_code == 2
    out = " ".join(result.output.split())
    assert "wf.yaml:6: step 'a': field 'bogus'" in out
    assert "wf.yaml:9: step 'b': field 'function': unknown transform function 'nope'" in out
    assert "wf.yaml:12: step 'c': field 'prompt': template refers to unknown step 'zzz'" in out
    assert "known steps: a, b, c" in out
