"""The error tree.

Two families hang off one root: "you wrote it wrong" (the workflow, the config, a missing
credential; found before anything runs) and "the run failed" (raised while steps execute).

    OrchestratorError
    ├── ConfigurationError                  config file or settings are invalid
    │   └── MissingDependencyError          an optional package (pip extra) is not installed
    ├── CredentialsError                    a provider's API key is not configured
    ├── WorkflowValidationError             one or more ValidationProblem found in a workflow
    ├── InputValidationError                run inputs do not match the workflow's `inputs`
    ├── StateError                          the state store failed or refused
    │   ├── SchemaOutOfDateError            the database needs `llm-orchestrator db upgrade`
    │   ├── StateSerializationError         a value cannot be stored as JSON (names the path)
    │   ├── RunNotFoundError                no run with that id
    │   ├── CheckpointNotFoundError         no checkpoint with that id
    │   └── ResumeRefusedError              the run cannot be resumed (finished, or changed)
    └── ExecutionError                      something failed while a run executed
        ├── StepFailedError                 a step raised; carries the step id
        ├── StepOutputError                 a step's declared output cannot be filled
        ├── TemplateRenderError             a template failed to render at run time
        ├── BudgetExceededError             the workflow budget was crossed
        ├── StepTimeoutError                a step or the whole workflow ran out of time
        ├── CircuitOpenError                a provider's circuit breaker is open
        ├── OutputSchemaError               a reply did not match `output_schema`
        ├── ActionError                     an action (webhook, user action) failed
        └── ProviderError                   a vendor call failed (typed at the adapter boundary)
            ├── ProviderAuthError           401/403: fix the key, never retried
            ├── ProviderBadRequestError     400/404/422: fix the request, never retried
            ├── ProviderRateLimitedError    429: retried, honouring retry_after
            ├── ProviderServerError         5xx: retried
            ├── ProviderTimeoutError        the request timed out: retried
            ├── ProviderConnectionError     could not connect: retried
            └── ProviderResponseError       the reply could not be understood (malformed JSON)

Whether an error may be retried is data on the error (`retryable`, `retry_after`), decided once
where the error is created, never by matching message text.
"""

from __future__ import annotations

from dataclasses import dataclass


class OrchestratorError(Exception):
    """Root of every error this package raises on purpose."""

    retryable: bool = False
    retry_after: float | None = None
    #: short machine-readable kind, stored in results ("step_failed", "timed_out", ...)
    code: str = "error"


class ConfigurationError(OrchestratorError):
    code = "configuration_error"


class MissingDependencyError(ConfigurationError):
    code = "missing_dependency"

    def __init__(self, package: str, extra: str, purpose: str) -> None:
        self.package = package
        self.extra = extra
        super().__init__(
            f"{purpose} needs the Python package '{package}', which is not installed; "
            f"install it with: pip install 'llm-orchestrator[{extra}]'"
        )


class CredentialsError(OrchestratorError):
    code = "missing_credentials"

    def __init__(self, provider: str, env_var: str, section: str = "providers") -> None:
        self.provider = provider
        self.env_var = env_var
        noun = "embedder" if section == "embedders" else "provider"
        super().__init__(
            f"{noun} '{provider}' has no API key: set the environment variable {env_var} "
            f"or `api_key` under {section}.{provider} in llm-orchestrator.yaml"
        )


@dataclass(frozen=True)
class ValidationProblem:
    """One thing wrong with a workflow, located as precisely as we can."""

    message: str
    file: str | None = None
    line: int | None = None
    step_id: str | None = None
    field: str | None = None
    fix: str | None = None

    def __str__(self) -> str:
        where = self.file or "<workflow>"
        if self.line is not None:
            where += f":{self.line}"
        parts = [where]
        if self.step_id:
            parts.append(f"step '{self.step_id}'")
        if self.field:
            parts.append(f"field '{self.field}'")
        text = ": ".join(parts) + ": " + self.message
        if self.fix:
            text += f" (fix: {self.fix})"
        return text


class WorkflowValidationError(OrchestratorError):
    code = "invalid_workflow"

    def __init__(self, problems: list[ValidationProblem]) -> None:
        self.problems = problems
        count = len(problems)
        lines = "\n".join(f"  - {p}" for p in problems)
        noun = "problem" if count == 1 else "problems"
        super().__init__(f"workflow is invalid ({count} {noun}):\n{lines}")


class InputValidationError(OrchestratorError):
    code = "invalid_input"


class StateError(OrchestratorError):
    code = "state_error"


class SchemaOutOfDateError(StateError):
    code = "schema_out_of_date"


class StateSerializationError(StateError):
    code = "state_serialization"


class RunNotFoundError(StateError):
    code = "run_not_found"


class CheckpointNotFoundError(StateError):
    code = "checkpoint_not_found"


class ResumeRefusedError(StateError):
    code = "resume_refused"


class ExecutionError(OrchestratorError):
    code = "execution_error"

    def __init__(self, message: str, *, step_id: str | None = None) -> None:
        self.step_id = step_id
        super().__init__(message)


class StepFailedError(ExecutionError):
    code = "step_failed"


class StepOutputError(ExecutionError):
    code = "output_error"


class TemplateRenderError(ExecutionError):
    code = "template_error"


class BudgetExceededError(ExecutionError):
    code = "budget_exceeded"


class StepTimeoutError(ExecutionError):
    code = "timed_out"
    retryable = True


class CircuitOpenError(ExecutionError):
    code = "circuit_open"

    def __init__(self, provider: str, retry_after: float) -> None:
        self.provider = provider
        self.retry_after = retry_after
        super().__init__(
            f"provider '{provider}' circuit breaker is open after repeated failures; "
            f"next trial call in {retry_after:.1f}s"
        )


class OutputSchemaError(ExecutionError):
    code = "output_schema_mismatch"


class ActionError(ExecutionError):
    code = "action_failed"

    def __init__(
        self,
        message: str,
        *,
        step_id: str | None = None,
        retryable: bool = False,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, step_id=step_id)
        self.retryable = retryable
        self.retry_after = retry_after


class ProviderError(ExecutionError):
    """A vendor call failed. Subclasses say why; fields carry what the vendor said."""

    code = "provider_error"

    def __init__(
        self,
        message: str,
        *,
        provider: str,
        status_code: int | None = None,
        body: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(f"{provider}: {message}")
        self.provider = provider
        self.status_code = status_code
        self.body = body
        self.retry_after = retry_after


class ProviderAuthError(ProviderError):
    code = "provider_auth"


class ProviderBadRequestError(ProviderError):
    code = "provider_bad_request"


class ProviderRateLimitedError(ProviderError):
    code = "provider_rate_limited"
    retryable = True


class ProviderServerError(ProviderError):
    code = "provider_server_error"
    retryable = True


class ProviderTimeoutError(ProviderError):
    code = "provider_timeout"
    retryable = True


class ProviderConnectionError(ProviderError):
    code = "provider_connection"
    retryable = True


class ProviderResponseError(ProviderError):
    code = "provider_bad_response"
    retryable = True
