"""`llm-orchestrator`: validate, run, schema, providers, graph.

Exit codes: 0 success; 1 the run failed (or timed out); 2 invalid usage, workflow, inputs or
configuration; 130 the run was cancelled with Ctrl-C.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import signal
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from llm_orchestrator.cli.common import (
    EXIT_CANCELLED,
    EXIT_FAILED,
    EXIT_INVALID,
    CliState,
    err,
    fail,
    settings_from_cli,
)
from llm_orchestrator.cli.display import ProgressPrinter
from llm_orchestrator.cli.ingest import index_app, ingest_command
from llm_orchestrator.cli.runs import db_app, recover_command, runs_app
from llm_orchestrator.engine.events import Observer
from llm_orchestrator.engine.result import RunResult, RunStatus
from llm_orchestrator.exceptions import OrchestratorError, WorkflowValidationError
from llm_orchestrator.orchestrator import (
    Orchestrator,
    check_workflow,
    close_shared_clients,
    load_workflow,
    validate_file,
)
from llm_orchestrator.settings import DEFAULT_MODELS, Settings
from llm_orchestrator.state import open_store
from llm_orchestrator.steps.registry import spec_models
from llm_orchestrator.workflow.graph import build_graph
from llm_orchestrator.workflow.loader import Workflow
from llm_orchestrator.workflow.schema import workflow_json_schema

app = typer.Typer(
    name="llm-orchestrator",
    help="Run LLM workflows declared in YAML as DAGs.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
out = Console(highlight=False, soft_wrap=True)

ConfigOption = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="Config file (default: ./llm-orchestrator.yaml)."),
]


@app.callback()
def _main(config: ConfigOption = None) -> None:
    CliState.config = config


app.add_typer(runs_app, name="runs")
app.add_typer(db_app, name="db")
app.command("recover")(recover_command)
app.command("ingest")(ingest_command)
app.add_typer(index_app, name="index")


def _print_problems(exc: WorkflowValidationError) -> None:
    for problem in exc.problems:
        err.print(f"[red]✗[/] {escape(str(problem))}")


@app.command()
def validate(
    files: Annotated[list[Path], typer.Argument(help="Workflow files (YAML or JSON).")],
) -> None:
    """Check workflow files and report every problem with its file, line and fix."""
    settings = settings_from_cli()
    invalid = 0
    for path in files:
        problems = validate_file(path, settings)
        if problems:
            invalid += 1
            _print_problems(WorkflowValidationError(problems))
            continue
        err.print(f"[green]✓[/] {escape(str(path))}: valid ({_count_steps(path)} steps)")
    if invalid:
        noun = "file is" if invalid == 1 else "files are"
        err.print(f"[red]{invalid} {noun} invalid[/]")
        raise typer.Exit(EXIT_INVALID)


def _count_steps(path: Path) -> int:
    graph, _ = build_graph(load_workflow(path))
    return len(graph.nodes) if graph else 0


def _parse_inputs(workflow: Workflow, pairs: list[str], input_file: Path | None) -> dict[str, Any]:
    values: dict[str, Any] = {}
    if input_file is not None:
        try:
            loaded = yaml.safe_load(input_file.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as exc:
            fail(f"--input-file {input_file}: {exc}")
        if not isinstance(loaded, dict):
            fail(f"--input-file {input_file}: must hold a mapping of input names to values")
        values.update(loaded)
    for pair in pairs:
        name, sep, raw = pair.partition("=")
        if not sep or not name:
            fail(f"--input {pair!r}: write it as name=value")
        declared = workflow.header.inputs.get(name)
        if declared is not None and declared.type == "string":
            values[name] = raw
            continue
        try:
            values[name] = json.loads(raw)
        except json.JSONDecodeError:
            values[name] = raw
    return values


async def _run_with_ctrl_c(
    settings: Settings,
    observers: list[Observer],
    workflow: Workflow,
    inputs: dict[str, Any],
    max_concurrency: int | None,
) -> RunResult:
    """A durable run (state in the configured database) that Ctrl-C stops cleanly."""
    store = await open_store(settings)
    orch = Orchestrator(settings, observers=observers, store=store)
    cancel = asyncio.Event()
    loop = asyncio.get_running_loop()

    def on_sigint() -> None:
        err.print("\n[yellow]stopping the run (Ctrl-C again to abort at once)…[/]")
        cancel.set()
        loop.remove_signal_handler(signal.SIGINT)

    loop.add_signal_handler(signal.SIGINT, on_sigint)
    try:
        if settings.state.recover_on_start:
            for recovered in await orch.recover():
                err.print(f"recovered run {recovered.run_id}: {recovered.status.value}")
        return await orch.run(workflow, inputs, cancel=cancel, max_concurrency=max_concurrency)
    finally:
        loop.remove_signal_handler(signal.SIGINT)
        await orch.aclose()
        await close_shared_clients()
        await store.close()


@app.command()
def run(
    file: Annotated[Path, typer.Argument(help="Workflow file (YAML or JSON).")],
    input: Annotated[
        list[str] | None, typer.Option("--input", "-i", help="An input as name=value.")
    ] = None,
    input_file: Annotated[
        Path | None, typer.Option("--input-file", help="Inputs from a JSON or YAML file.")
    ] = None,
    max_concurrency: Annotated[
        int | None, typer.Option("--max-concurrency", min=1, help="Most steps at once.")
    ] = None,
    output: Annotated[
        str, typer.Option("--output", "-o", help="Result format: json or text.")
    ] = "json",
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print the execution plan; call nothing.")
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress on stderr.")] = False,
) -> None:
    """Run a workflow: progress on stderr, the result on stdout."""
    if output not in ("json", "text"):
        fail(f"--output must be json or text, not {output!r}")
    settings = settings_from_cli()
    try:
        workflow = load_workflow(file)
        graph, problems = check_workflow(workflow, settings)
        if problems:
            raise WorkflowValidationError(problems)
        inputs = _parse_inputs(workflow, input or [], input_file)
        if dry_run:
            _print_plan(Orchestrator(settings), workflow, output)
            return
        observers: list[Observer] = [] if quiet else [ProgressPrinter(err)]
        result = asyncio.run(
            _run_with_ctrl_c(settings, observers, workflow, inputs, max_concurrency)
        )
    except WorkflowValidationError as exc:
        _print_problems(exc)
        raise typer.Exit(EXIT_INVALID) from None
    except OrchestratorError as exc:
        fail(str(exc))
    if output == "json":
        out.print_json(json.dumps(result.to_dict(), default=str, ensure_ascii=False))
    else:
        _print_text_result(result)
    if result.status is RunStatus.CANCELLED:
        raise typer.Exit(EXIT_CANCELLED)
    if result.status is not RunStatus.COMPLETED:
        raise typer.Exit(EXIT_FAILED)


def _print_plan(orch: Orchestrator, workflow: Workflow, output: str) -> None:
    plan = orch.plan(workflow)
    layers = plan.layers()
    if output == "json":
        body = {
            "workflow": plan.name,
            "layers": [
                [
                    {"id": n, "type": plan.nodes[n].type, "depends_on": list(plan.nodes[n].deps)}
                    for n in layer
                ]
                for layer in layers
            ],
            "max_concurrency": plan.max_concurrency,
            "timeout_seconds": plan.timeout,
        }
        out.print_json(json.dumps(body))
        return
    out.print(f"plan for {escape(plan.name)}: {len(plan.nodes)} steps in {len(layers)} layers")
    for index, layer in enumerate(layers, 1):
        out.print(f"  layer {index}: " + ", ".join(f"{n} ({plan.nodes[n].type})" for n in layer))


def _print_text_result(result: RunResult) -> None:
    out.print(f"{result.workflow}: {result.status.value} ({result.duration_seconds:.2f}s)")
    for step_id, step in result.steps.items():
        first = next(iter(step.outputs.values()), None) if step.outputs else None
        detail = step.error.message if step.error else (step.skip_reason or "")
        shown = first if isinstance(first, str) else json.dumps(first, default=str)
        out.print(
            f"[bold]{escape(step_id)}[/] {escape(f'[{step.status.value}]')} "
            + escape(shown if step.outputs else detail)
        )
    usage = result.usage
    out.print(
        f"tokens: {usage.input_tokens} in / {usage.output_tokens} out · cost ${usage.cost_usd:.6f}"
    )


@app.command()
def schema() -> None:
    """Print the JSON Schema of the workflow format (for editor validation)."""
    out.file.write(json.dumps(workflow_json_schema(spec_models()), indent=2) + "\n")


@app.command()
def providers() -> None:
    """List provider instances, their default models and whether credentials were found."""
    settings = settings_from_cli()
    table = Table(title="providers")
    for column in ("name", "type", "default model", "credentials", "package", "default"):
        table.add_column(column)
    names = ["local", "openai", "anthropic", *sorted(settings.providers)]
    default = settings.default_provider_name()
    packages = {
        "openai": "openai",
        "openai_compatible": "openai",
        "anthropic": "anthropic",
        "local": "llama_cpp",
    }
    for name in dict.fromkeys(names):
        cfg = settings.provider(name)
        if cfg is None:
            continue
        env = cfg.key_env()
        if cfg.type == "local":
            creds = "not needed"
        elif cfg.resolve_api_key():
            creds = f"[green]found[/] ({'config' if cfg.api_key else env})"
        elif cfg.type == "openai_compatible":
            creds = "optional (none set)"
        else:
            creds = f"[red]missing[/] (set {env})"
        installed = importlib.util.find_spec(packages[cfg.type]) is not None
        package = (
            "[green]installed[/]"
            if installed
            else ("[red]missing[/] (pip install 'llm-orchestrator[local]')")
        )
        table.add_row(
            name,
            cfg.type,
            cfg.model_or_default(None) or DEFAULT_MODELS[cfg.type],
            creds,
            package,
            "✓" if name == default else "",
        )
    out.print(table)


@app.command()
def graph(
    file: Annotated[Path, typer.Argument(help="Workflow file.")],
    format: Annotated[str, typer.Option("--format", "-f", help="mermaid or dot.")] = "mermaid",
) -> None:
    """Print the workflow's DAG as Mermaid or Graphviz dot."""
    if format not in ("mermaid", "dot"):
        fail(f"--format must be mermaid or dot, not {format!r}")
    try:
        workflow = load_workflow(file)
        built, problems = build_graph(workflow, settings_from_cli().limits)
        if built is None:
            raise WorkflowValidationError(problems)
    except WorkflowValidationError as exc:
        _print_problems(exc)
        raise typer.Exit(EXIT_INVALID) from None
    lines: list[str] = []
    if format == "mermaid":
        lines.append("graph TD")
        for node_id in built.order:
            node = built.nodes[node_id]
            lines.append(f'    {node_id}["{node_id} ({node.spec.type})"]')
            for dep in node.deps:
                lines.append(f"    {dep} --> {node_id}")
            for dep in node.soft_deps:
                lines.append(f"    {dep} -.-> {node_id}")
    else:
        lines.append(f'digraph "{workflow.name}" {{')
        for node_id in built.order:
            node = built.nodes[node_id]
            lines.append(f'  "{node_id}" [label="{node_id}\\n{node.spec.type}"];')
            for dep in node.deps:
                lines.append(f'  "{dep}" -> "{node_id}";')
            for dep in node.soft_deps:
                lines.append(f'  "{dep}" -> "{node_id}" [style=dashed];')
        lines.append("}")
    out.file.write("\n".join(lines) + "\n")


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        err.print("[red]aborted[/]")
        sys.exit(EXIT_CANCELLED)
