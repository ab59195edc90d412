"""What a step sees while it runs, and what it hands back."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from llm_orchestrator.engine.events import EventBus, StepToken

if TYPE_CHECKING:
    from llm_orchestrator.engine.journal import Ledger
from llm_orchestrator.engine.usage import ZERO_USAGE, RunAccounting, Usage


@dataclass(frozen=True, slots=True)
class StepOutput:
    """A step's result.

    `values` fill the declared output names in order; `raw` is what `output_mapping` JSON paths
    read (defaults to a dict of the positional values by default output name). `skip` names
    nodes the scheduler must skip (a branch's untaken steps).
    """

    values: tuple[Any, ...]
    raw: Any = None
    usage: Usage = ZERO_USAGE
    #: extra facts for the result (e.g. which provider answered after a fallback)
    info: Mapping[str, Any] = field(default_factory=dict)
    skip: frozenset[str] = frozenset()


class StepContext:
    """Per step-attempt view of the run. `vars` is the template render context."""

    __slots__ = ("run_id", "step_id", "attempt", "vars", "accounting", "_bus", "usage", "ledger")

    def __init__(
        self,
        run_id: str,
        step_id: str,
        attempt: int,
        vars: Mapping[str, Any],
        accounting: RunAccounting,
        bus: EventBus,
        ledger: Ledger | None = None,
    ) -> None:
        self.run_id = run_id
        self.step_id = step_id
        self.attempt = attempt
        self.vars = vars
        self.accounting = accounting
        self._bus = bus
        #: usage recorded by this attempt so far
        self.usage = ZERO_USAGE
        #: where side-effecting steps record claims and receipts (durable runs only)
        self.ledger = ledger

    def record_usage(self, usage: Usage) -> None:
        """Add a call's usage to the step and the run; raises BudgetExceededError past budget."""
        self.usage = self.usage + usage
        self.accounting.record(self.step_id, usage)

    def check_budget(self) -> None:
        self.accounting.check(self.step_id)

    @property
    def streaming_observed(self) -> bool:
        return self._bus.active

    def emit_token(self, text: str) -> None:
        if self._bus.active:
            self._bus.emit(StepToken(self.run_id, self.step_id, text))


class Runnable(Protocol):
    """A step implementation bound to its spec; the executor calls `run` once per attempt."""

    async def run(self, ctx: StepContext) -> StepOutput: ...
