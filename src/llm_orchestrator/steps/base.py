"""The contract every step kind implements, and the services a step may use."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Generic, TypeVar

import httpx

from llm_orchestrator.embeddings.registry import EmbedderRegistry
from llm_orchestrator.engine.context import StepContext, StepOutput
from llm_orchestrator.engine.templates import CompiledCondition, CompiledTemplate
from llm_orchestrator.engine.usage import PriceTable
from llm_orchestrator.providers.registry import ProviderRegistry
from llm_orchestrator.settings import Settings
from llm_orchestrator.workflow.spec import StepSpec


@dataclass
class Services:
    """Process-level resources shared by the steps of every run built from them."""

    settings: Settings
    providers: ProviderRegistry
    prices: PriceTable
    _http: httpx.AsyncClient | None = field(default=None, repr=False)
    _embedders: EmbedderRegistry | None = field(default=None, repr=False)

    @property
    def http(self) -> httpx.AsyncClient:
        """A shared HTTP client for actions (webhooks); created on first use."""
        if self._http is None:
            self._http = httpx.AsyncClient(follow_redirects=False)
        return self._http

    @property
    def embedders(self) -> EmbedderRegistry:
        """Embedders by name: the settings plus the workflow's own providers."""
        if self._embedders is None:
            self._embedders = EmbedderRegistry(
                self.settings, configs=self.settings.embedders, providers=self.providers.extra
            )
        return self._embedders

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.aclose()
            self._http = None


SpecT = TypeVar("SpecT", bound=StepSpec)


class StepKind(ABC, Generic[SpecT]):
    """A step type: its spec model, validation, and how one attempt runs.

    Instances are built once per workflow (templates compiled then) and run many times.
    Register new kinds under the entry point group `llm_orchestrator.steps`.
    """

    type_name: ClassVar[str]
    spec_model: ClassVar[type[StepSpec]]

    def __init__(self, spec: SpecT, services: Services) -> None:
        self.spec = spec
        self.services = services

    @classmethod
    def check(cls, spec: SpecT, services: Services) -> list[tuple[str, str | None, str | None]]:
        """Kind-specific problems found before running: (message, field, fix) tuples.
        Must not touch the network."""
        return []

    @abstractmethod
    async def run(self, ctx: StepContext) -> StepOutput: ...


def compile_templates(values: Mapping[str, Any]) -> dict[str, Any]:
    """Compile every string (recursively) of a params mapping into templates."""
    return {key: _compile_value(value) for key, value in values.items()}


def _compile_value(value: Any) -> Any:
    if isinstance(value, str):
        return CompiledTemplate(value)
    if isinstance(value, dict):
        return {k: _compile_value(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_compile_value(v) for v in value]
    return value


def render_value(value: Any, vars: Mapping[str, Any]) -> Any:
    """Render what `compile_templates` produced; single-expression templates stay native."""
    if isinstance(value, CompiledTemplate):
        return value.render(vars)
    if isinstance(value, dict):
        return {k: render_value(v, vars) for k, v in value.items()}
    if isinstance(value, list):
        return [render_value(v, vars) for v in value]
    return value


def compile_reference(source: str) -> CompiledTemplate | CompiledCondition:
    """An input given as a template (`{{ x }}`) or as a bare expression (`steps.a.text`)."""
    if "{{" in source or "{%" in source:
        return CompiledTemplate(source)
    return CompiledCondition(source)


def template_fields_of(values: Mapping[str, Any], prefix: str) -> dict[str, str]:
    """Field path -> template source for every string in a params mapping (for validation)."""
    out: dict[str, str] = {}
    for key, value in values.items():
        path = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, str):
            out[path] = value
        elif isinstance(value, dict):
            out.update(template_fields_of(value, path))
        elif isinstance(value, list):
            out.update(template_fields_of({str(i): v for i, v in enumerate(value)}, path))
    return out
