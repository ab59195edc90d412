"""llm-orchestrator: LLM workflows declared in YAML, run as DAGs.

What users may import is listed in `__all__`; every other module may change.
"""

from llm_orchestrator.engine.events import Event as Event
from llm_orchestrator.engine.events import RunFinished as RunFinished
from llm_orchestrator.engine.events import RunStarted as RunStarted
from llm_orchestrator.engine.events import StepCompleted as StepCompleted
from llm_orchestrator.engine.events import StepFailed as StepFailed
from llm_orchestrator.engine.events import StepRetrying as StepRetrying
from llm_orchestrator.engine.events import StepSkipped as StepSkipped
from llm_orchestrator.engine.events import StepStarted as StepStarted
from llm_orchestrator.engine.events import StepToken as StepToken
from llm_orchestrator.engine.result import AttemptRecord as AttemptRecord
from llm_orchestrator.engine.result import ErrorInfo as ErrorInfo
from llm_orchestrator.engine.result import RunResult as RunResult
from llm_orchestrator.engine.result import RunStatus as RunStatus
from llm_orchestrator.engine.result import StepResult as StepResult
from llm_orchestrator.engine.result import StepStatus as StepStatus
from llm_orchestrator.engine.usage import Usage as Usage
from llm_orchestrator.exceptions import ConfigurationError as ConfigurationError
from llm_orchestrator.exceptions import CredentialsError as CredentialsError
from llm_orchestrator.exceptions import ExecutionError as ExecutionError
from llm_orchestrator.exceptions import InputValidationError as InputValidationError
from llm_orchestrator.exceptions import OrchestratorError as OrchestratorError
from llm_orchestrator.exceptions import ProviderError as ProviderError
from llm_orchestrator.exceptions import ValidationProblem as ValidationProblem
from llm_orchestrator.exceptions import WorkflowValidationError as WorkflowValidationError
from llm_orchestrator.orchestrator import Orchestrator as Orchestrator
from llm_orchestrator.orchestrator import load_workflow as load_workflow
from llm_orchestrator.orchestrator import run_workflow as run_workflow
from llm_orchestrator.settings import Settings as Settings
from llm_orchestrator.settings import load_settings as load_settings
from llm_orchestrator.workflow.loader import Workflow as Workflow

__version__ = "0.1.0"

__all__ = [
    "AttemptRecord",
    "ConfigurationError",
    "CredentialsError",
    "ErrorInfo",
    "Event",
    "ExecutionError",
    "InputValidationError",
    "Orchestrator",
    "OrchestratorError",
    "ProviderError",
    "RunFinished",
    "RunResult",
    "RunStarted",
    "RunStatus",
    "Settings",
    "StepCompleted",
    "StepFailed",
    "StepResult",
    "StepRetrying",
    "StepSkipped",
    "StepStarted",
    "StepStatus",
    "StepToken",
    "Usage",
    "ValidationProblem",
    "Workflow",
    "WorkflowValidationError",
    "__version__",
    "load_settings",
    "load_workflow",
    "run_workflow",
]
