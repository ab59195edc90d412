"""A test step kind, `probe`: sleeps, fails on demand and records when it ran.

Registered in-process, the way a plug-in kind would be through the entry point group.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from llm_orchestrator.engine.context import StepContext, StepOutput
from llm_orchestrator.engine.templates import CompiledTemplate
from llm_orchestrator.engine.usage import Usage
from llm_orchestrator.exceptions import (
    ProviderAuthError,
    ProviderRateLimitedError,
    ProviderServerError,
)
from llm_orchestrator.steps.base import Services, StepKind
from llm_orchestrator.steps.registry import register_step_kind
from llm_orchestrator.workflow.spec import StepSpec


@dataclass
class Call:
    step_id: str
    attempt: int
    start: float
    end: float | None = None
    cancelled: bool = False


CALLS: list[Call] = []


class ProbeSpec(StepSpec):
    type: Literal["probe"]
    value: Any = None
    sleep: float = 0.0
    #: the first N attempts fail
    fail_times: int = 0
    error: Literal["server", "auth", "rate_limited", "bug"] = "server"
    retry_after: float | None = None
    tokens: int = 0

    def template_fields(self) -> dict[str, str]:
        return {"value": self.value} if isinstance(self.value, str) else {}


class ProbeKind(StepKind[ProbeSpec]):
    type_name: ClassVar[str] = "probe"
    spec_model: ClassVar[type[StepSpec]] = ProbeSpec

    def __init__(self, spec: ProbeSpec, services: Services) -> None:
        super().__init__(spec, services)
        self._value = CompiledTemplate(spec.value) if isinstance(spec.value, str) else None

    async def run(self, ctx: StepContext) -> StepOutput:
        call = Call(ctx.step_id, ctx.attempt, time.perf_counter())
        CALLS.append(call)
        try:
            if self.spec.sleep:
                await asyncio.sleep(self.spec.sleep)
        except asyncio.CancelledError:
            call.cancelled = True
            raise
        finally:
            call.end = time.perf_counter()
        if self.spec.tokens:
            ctx.record_usage(Usage(self.spec.tokens, self.spec.tokens, 0.001 * self.spec.tokens))
        if ctx.attempt <= self.spec.fail_times:
            kind = self.spec.error
            if kind == "server":
                raise ProviderServerError("boom", provider="probe", status_code=500)
            if kind == "auth":
                raise ProviderAuthError("bad key", provider="probe", status_code=401)
            if kind == "rate_limited":
                raise ProviderRateLimitedError(
                    "slow down",
                    provider="probe",
                    status_code=429,
                    retry_after=self.spec.retry_after,
                )
            raise RuntimeError("a bug in the step")
        value = self._value.render(ctx.vars) if self._value is not None else self.spec.value
        return StepOutput(values=(value,), raw={"result": value, "attempt": ctx.attempt})


def install() -> None:
    register_step_kind(ProbeKind)
