"""pydantic models of the workflow file. Unknown keys are errors.

Step kinds define their own spec model (a subclass of `StepSpec`) next to their implementation
and are looked up by `type:`; this module only holds what every step and workflow shares.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    AliasChoices,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from llm_orchestrator.settings import CircuitBreakerSettings, ProviderType, RateLimits

STEP_ID_PATTERN = r"^[A-Za-z_][A-Za-z0-9_\-]*$"

#: a list of strings, where one string alone is accepted too
OneOrMany = Annotated[
    list[str],
    BeforeValidator(lambda value: [value] if isinstance(value, str) else value),
    WithJsonSchema({"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]}),
]


class SpecModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RetrySpec(SpecModel):
    """How a step retries retryable errors (rate limits, 5xx, timeouts, connection errors).

    The names the Rust LLM-Orchestrator's README uses are accepted too: `strategy`,
    `initial_delay`, `max_delay` (milliseconds), `backoff_multiplier`, `jitter: true`.
    """

    #: total attempts including the first one; 1 disables retries
    max_attempts: int = Field(default=3, ge=1, le=100)
    backoff: Literal["exponential", "linear", "constant"] = Field(
        default="exponential", validation_alias=AliasChoices("backoff", "strategy")
    )
    #: delay before the second attempt
    initial_delay_ms: int = Field(
        default=100, ge=0, validation_alias=AliasChoices("initial_delay_ms", "initial_delay")
    )
    #: upper bound of any delay (a provider's Retry-After is honoured up to this bound too)
    max_delay_ms: int = Field(
        default=30_000, ge=0, validation_alias=AliasChoices("max_delay_ms", "max_delay")
    )
    #: growth factor of exponential backoff
    multiplier: float = Field(
        default=2.0, ge=1, validation_alias=AliasChoices("multiplier", "backoff_multiplier")
    )
    #: randomise each delay by up to this fraction (0.1 = +-10%; true = 0.1, false = 0)
    jitter: float = Field(default=0.1, ge=0, le=1)

    @field_validator("jitter", mode="before")
    @classmethod
    def _jitter_switch(cls, value: Any) -> Any:
        if isinstance(value, bool):
            return 0.1 if value else 0.0
        return value


class InputSpec(SpecModel):
    type: Literal["string", "number", "integer", "boolean", "object", "array", "any"] = "any"
    description: str | None = None
    required: bool = True
    default: Any = None

    @model_validator(mode="after")
    def _default_makes_optional(self) -> InputSpec:
        if self.default is not None and self.required and "required" not in self.model_fields_set:
            object.__setattr__(self, "required", False)
        return self


class BudgetSpec(SpecModel):
    max_tokens: int | None = Field(default=None, ge=1)
    max_cost_usd: float | None = Field(default=None, gt=0)


class WorkflowProviderSpec(SpecModel):
    """A named provider instance declared in the workflow. Keys never live in workflow files:
    name the environment variable with `api_key_env` instead."""

    type: ProviderType
    base_url: str | None = None
    default_model: str | None = Field(default=None, alias="model")
    api_key_env: str | None = None
    timeout_seconds: float = Field(default=60.0, gt=0)
    rate_limits: RateLimits = Field(default_factory=RateLimits)
    circuit_breaker: CircuitBreakerSettings = Field(default_factory=CircuitBreakerSettings)

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class StepSpec(SpecModel):
    """Fields every step has. Kinds subclass this and set `type` to a Literal."""

    id: str = Field(pattern=STEP_ID_PATTERN)
    type: str
    description: str | None = None
    depends_on: OneOrMany = Field(default_factory=list)
    #: expression; when false the step is skipped, and so are the steps that depend on it
    condition: str | None = None
    #: names of the step's outputs; positional (for llm: [text, metadata])
    output: OneOrMany = Field(default_factory=list)
    #: output name -> JSON path into the step's raw result (e.g. "$.metadata.usage")
    output_mapping: dict[str, str] = Field(default_factory=dict)
    timeout_seconds: float | None = Field(default=None, gt=0)
    retry: RetrySpec | None = None
    #: when true a failure of this step does not fail the run; dependents are skipped
    continue_on_error: bool = False

    #: the names a kind's outputs get when the step declares none
    default_outputs: ClassVar[tuple[str, ...]] = ("result",)
    #: how many positional values the kind produces (outputs beyond need output_mapping)
    positional_outputs: ClassVar[int] = 1

    def output_names(self) -> list[str]:
        return list(self.output) if self.output else list(self.default_outputs)

    def template_fields(self) -> dict[str, str]:
        """Field path -> template source, for the fields rendered at run time."""
        return {}

    def child_groups(self) -> dict[tuple[str, ...], list[StepSpec]]:
        """Nested steps of a composite, keyed by their location in the step
        (("tasks",), ("branches", "positive"), ("default",))."""
        return {}

    def gate_condition(self) -> str | None:
        """The expression that decides whether the step runs at all."""
        return self.condition

    def condition_fields(self) -> dict[str, str]:
        """Extra expressions the kind evaluates itself (a branch's `on`)."""
        return {}

    def children_max_concurrency(self) -> int | None:
        return None


class WorkflowHeader(SpecModel):
    """The top level of a workflow file; steps are validated one by one by their kind."""

    name: str = Field(min_length=1)
    version: str = "1.0"
    description: str | None = None
    inputs: dict[str, InputSpec] = Field(default_factory=dict)
    steps: list[Any] = Field(min_length=1)
    #: whole-run limit; in-flight work is cancelled and the run ends `timed_out`
    timeout_seconds: float = Field(default=3600, gt=0)
    #: most steps running at once in one run (default: settings.max_concurrency, 16)
    max_concurrency: int | None = Field(default=None, ge=1)
    metadata: dict[str, Any] = Field(default_factory=dict)
    providers: dict[str, WorkflowProviderSpec] = Field(default_factory=dict)
    budget: BudgetSpec | None = None

    @field_validator("version", mode="before")
    @classmethod
    def _version_as_text(cls, value: Any) -> Any:
        return str(value) if isinstance(value, int | float) else value
