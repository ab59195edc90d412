"""Live run progress on stderr, as one line per step event (tokens inline when streaming)."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.markup import escape

from llm_orchestrator.engine.events import (
    Event,
    RunFinished,
    RunStarted,
    StepCompleted,
    StepFailed,
    StepRetrying,
    StepSkipped,
    StepStarted,
    StepToken,
)


def _preview(value: Any, width: int = 70) -> str:
    text = value if isinstance(value, str) else repr(value)
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


class ProgressPrinter:
    """An event observer that prints progress; cheap enough to run inline."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self._streaming: str | None = None

    def _end_stream(self) -> None:
        if self._streaming is not None:
            self.console.file.write("\n")
            self.console.file.flush()
            self._streaming = None

    def __call__(self, event: Event) -> None:
        c = self.console
        if isinstance(event, StepToken):
            if self._streaming != event.step_id:
                self._end_stream()
                c.print(f"  [cyan]…[/] {escape(event.step_id)}: ", end="")
                self._streaming = event.step_id
            c.file.write(event.text)
            c.file.flush()
            return
        self._end_stream()
        if isinstance(event, RunStarted):
            c.print(
                f"[bold]run[/] {escape(event.workflow)} "
                f"[dim]{event.run_id} · {len(event.step_ids)} steps[/]"
            )
        elif isinstance(event, StepStarted):
            again = f" (attempt {event.attempt})" if event.attempt > 1 else ""
            c.print(f"  [blue]▶[/] {escape(event.step_id)} [dim]{event.step_type}{again}[/]")
        elif isinstance(event, StepCompleted):
            first = next(iter(event.outputs.values()), None)
            c.print(
                f"  [green]✓[/] {escape(event.step_id)} [dim]{event.duration_seconds:.2f}s[/] "
                f"{escape(_preview(first))}"
            )
        elif isinstance(event, StepRetrying):
            c.print(
                f"  [yellow]↻[/] {escape(event.step_id)} attempt {event.attempt} failed: "
                f"{escape(_preview(event.error, 100))}; retrying in {event.delay_seconds:.2f}s"
            )
        elif isinstance(event, StepFailed):
            c.print(
                f"  [red]✗[/] {escape(event.step_id)} {event.status}: "
                f"{escape(_preview(event.error, 200))}"
            )
        elif isinstance(event, StepSkipped):
            c.print(f"  [dim]↷ {escape(event.step_id)} skipped: {escape(event.reason)}[/]")
        elif isinstance(event, RunFinished):
            colour = "green" if event.status == "completed" else "red"
            c.print(f"[bold {colour}]{event.status}[/] [dim]in {event.duration_seconds:.2f}s[/]")
