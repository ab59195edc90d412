"""What every CLI command shares: exit codes, the --config option's value, error exits."""

from __future__ import annotations

from pathlib import Path
from typing import NoReturn

import typer
from rich.console import Console
from rich.markup import escape

from llm_orchestrator.exceptions import OrchestratorError
from llm_orchestrator.settings import Settings, load_settings

EXIT_FAILED = 1
EXIT_INVALID = 2
EXIT_CANCELLED = 130

err = Console(stderr=True, highlight=False, soft_wrap=True)


class CliState:
    config: Path | None = None


def fail(message: str, code: int = EXIT_INVALID) -> NoReturn:
    err.print(f"[red]error:[/] {escape(message)}")
    raise typer.Exit(code)


def settings_from_cli() -> Settings:
    try:
        return load_settings(CliState.config)
    except OrchestratorError as exc:
        fail(str(exc))
