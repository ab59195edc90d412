"""Action handlers: the built-ins (`log`, `webhook`), plus plug-ins from the entry point group
`llm_orchestrator.actions`.

A plug-in entry point names an `ActionHandler` (instance or subclass; its parameters are
validated before the run) or a plain callable `fn(params: dict, ctx: ActionContext)`, async or
sync (sync ones run in a worker thread), whose parameters are passed as rendered. Plain
callables count as having side effects. A plug-in cannot replace a built-in of the same name.
"""

from __future__ import annotations

import asyncio
import difflib
import email.utils
import hashlib
import importlib.metadata
import inspect
import json
import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any, Generic, Literal, TypeVar
from urllib.parse import urlsplit

import httpx
from pydantic import AliasChoices, BaseModel, ConfigDict, Field, field_validator

from llm_orchestrator.exceptions import ActionError

logger = logging.getLogger(__name__)
#: where the `log` action writes; records carry `run_id` and `step_id` attributes
action_logger = logging.getLogger("llm_orchestrator.actions")

ENTRY_POINT_GROUP = "llm_orchestrator.actions"

P = TypeVar("P")


@dataclass(frozen=True, slots=True)
class ActionContext:
    """What a handler knows about the attempt it runs in."""

    run_id: str
    step_id: str
    #: 1 for the first attempt, 2 for the first retry, ...
    attempt: int
    #: the same for every attempt of this step in this run with the same parameters
    idempotency_key: str
    #: the process-wide HTTP client (do not close it)
    http: httpx.AsyncClient


def canonical_json(value: Any) -> str:
    """Key-sorted compact JSON: equal values give equal text."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def idempotency_key(run_id: str, step_id: str, material: Any) -> str:
    """sha256 hex of (run_id, step_id, canonical JSON of `material`)."""
    text = canonical_json([run_id, step_id, material])
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class ActionParams(BaseModel):
    """Base of the parameter models: unknown parameters are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class ActionHandler(ABC, Generic[P]):
    """An action a step can run by name (`action: <name>`)."""

    name: str = ""
    #: validates the rendered parameters; None passes them as a dict, unvalidated
    params_model: type[BaseModel] | None = None
    #: whether running it changes something outside the run (used for a claim/receipt ledger)
    side_effects: bool = True

    def validate(self, params: Mapping[str, Any]) -> P:
        """Validate rendered parameters; raises pydantic's ValidationError."""
        if self.params_model is None:
            return dict(params)  # type: ignore[return-value]
        return self.params_model.model_validate(dict(params))  # type: ignore[return-value]

    def idempotency_material(self, params: P) -> Any:
        """What the idempotency key is derived from (besides run and step): the parameters."""
        if isinstance(params, BaseModel):
            return params.model_dump(mode="json")
        return params

    @abstractmethod
    async def run(self, params: P, ctx: ActionContext) -> Any:
        """Do the action once; the return value is the step's result."""


# -- log --------------------------------------------------------------------------------------

_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}


class LogParams(ActionParams):
    message: str
    level: Literal["debug", "info", "warning", "error"] = "info"

    @field_validator("message", mode="before")
    @classmethod
    def _as_text(cls, value: Any) -> Any:
        if isinstance(value, str) or value is None:
            return value
        if isinstance(value, dict | list):
            return json.dumps(value, ensure_ascii=False, default=str)
        return str(value)

    @field_validator("level", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return value.lower() if isinstance(value, str) else value


class LogAction(ActionHandler[LogParams]):
    """Write a message to the logger "llm_orchestrator.actions" (with run_id and step_id).

    message (required): the text (a template).
    level (info): debug, info, warning or error.
    The result is the rendered message.
    """

    name = "log"
    params_model = LogParams
    side_effects = False

    async def run(self, params: LogParams, ctx: ActionContext) -> str:
        action_logger.log(
            _LEVELS[params.level],
            params.message,
            extra={"run_id": ctx.run_id, "step_id": ctx.step_id, "action": "log"},
        )
        return params.message


# -- webhook ----------------------------------------------------------------------------------


class WebhookParams(ActionParams):
    url: str
    payload: Any = Field(default=None, validation_alias=AliasChoices("payload", "body"))
    headers: dict[str, str] = Field(default_factory=dict)
    method: Literal["POST", "PUT", "PATCH"] = "POST"
    timeout_seconds: float = Field(default=10.0, gt=0)

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"{value!r} is not an http(s) URL")
        return value

    @field_validator("method", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value


def _safe_url(url: str) -> str:
    """The URL without path and query, which often hold secrets (Slack-style webhooks)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    tail = "/..." if parts.path not in ("", "/") or parts.query else ""
    return f"{parts.scheme}://{host}{port}{tail}"


def _retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _body(response: httpx.Response) -> Any:
    if not response.content:
        return None
    try:
        return json.loads(response.text)
    except ValueError:
        return response.text


class WebhookAction(ActionHandler[WebhookParams]):
    """Send the payload as JSON to a URL.

    url (required): http(s) URL (a template).
    payload (null; alias body): any JSON value; templates inside are rendered.
    headers ({}): extra request headers.
    method (POST): POST, PUT or PATCH.
    timeout_seconds (10; else the step's timeout_seconds): per-request timeout.
    Sends `Idempotency-Key`: sha256 of (run id, step id, canonical JSON of the payload), the
    same for every retry. 5xx, 408, 429 (Retry-After honoured), timeouts and connection errors
    are retryable; other statuses are not. Result: {status_code, body, idempotency_key}.
    """

    name = "webhook"
    params_model = WebhookParams
    side_effects = True

    def idempotency_material(self, params: WebhookParams) -> Any:
        return params.payload

    async def run(self, params: WebhookParams, ctx: ActionContext) -> dict[str, Any]:
        where = f"step '{ctx.step_id}': webhook {params.method} {_safe_url(params.url)}"
        try:
            content = json.dumps(params.payload, ensure_ascii=False, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise ActionError(
                f"{where}: the payload is not JSON: {exc}", step_id=ctx.step_id
            ) from exc
        headers = {"Content-Type": "application/json", "Idempotency-Key": ctx.idempotency_key}
        lowered = {k.lower(): k for k in headers}
        for key, value in params.headers.items():
            headers.pop(lowered.get(key.lower(), key), None)
            headers[key] = value
        try:
            response = await ctx.http.request(
                params.method,
                params.url,
                content=content.encode("utf-8"),
                headers=headers,
                timeout=httpx.Timeout(params.timeout_seconds),
            )
        except httpx.TimeoutException as exc:
            raise ActionError(
                f"{where}: no answer within {params.timeout_seconds:g}s (timeout_seconds)",
                step_id=ctx.step_id,
                retryable=True,
            ) from exc
        except (httpx.NetworkError, httpx.RemoteProtocolError, httpx.ProxyError) as exc:
            raise ActionError(
                f"{where}: could not reach the server: {type(exc).__name__}: {exc}",
                step_id=ctx.step_id,
                retryable=True,
            ) from exc
        except (httpx.RequestError, httpx.InvalidURL) as exc:
            raise ActionError(
                f"{where}: request failed: {type(exc).__name__}: {exc}", step_id=ctx.step_id
            ) from exc
        try:
            response.raise_for_status()
        except httpx.HTTPStatusError as exc:
            raise _status_error(where, response, ctx.step_id) from exc
        return {
            "status_code": response.status_code,
            "body": _body(response),
            "idempotency_key": ctx.idempotency_key,
        }


def _status_error(where: str, response: httpx.Response, step_id: str) -> ActionError:
    status = response.status_code
    text = response.text[:500]
    retryable = status >= 500 or status in (408, 429)
    retry_after = _retry_after(response.headers.get("retry-after")) if retryable else None
    if 300 <= status < 400:
        why = "redirects are not followed; use the final URL"
    elif retryable:
        why = "retryable"
    else:
        why = "not retried: fix the request"
    return ActionError(
        f"{where}: HTTP {status} ({why}): {text}",
        step_id=step_id,
        retryable=retryable,
        retry_after=retry_after,
    )


# -- plug-ins ---------------------------------------------------------------------------------


class _CallableHandler(ActionHandler[dict[str, Any]]):
    """A plain function registered as an action: params unvalidated, side effects assumed."""

    def __init__(self, name: str, fn: Callable[..., Any]) -> None:
        self.name = name
        self.fn = fn

    async def run(self, params: dict[str, Any], ctx: ActionContext) -> Any:
        if inspect.iscoroutinefunction(self.fn):
            return await self.fn(params, ctx)
        result = await asyncio.to_thread(self.fn, params, ctx)
        if inspect.isawaitable(result):
            result = await result
        return result


BUILTINS: dict[str, ActionHandler[Any]] = {h.name: h for h in (LogAction(), WebhookAction())}


@dataclass(frozen=True)
class _Loaded:
    handlers: dict[str, ActionHandler[Any]]
    #: plug-in name -> why it could not be loaded
    broken: dict[str, str]


def _as_handler(name: str, obj: Any) -> ActionHandler[Any] | None:
    if isinstance(obj, type) and issubclass(obj, ActionHandler):
        obj = obj()
    if isinstance(obj, ActionHandler):
        return obj
    if callable(obj):
        return _CallableHandler(name, obj)
    return None


@cache
def _load() -> _Loaded:
    handlers = dict(BUILTINS)
    broken: dict[str, str] = {}
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        if ep.name in BUILTINS:
            logger.warning(
                "action plug-in %r (%s) has the name of a built-in action; the built-in is used",
                ep.name,
                ep.value,
            )
            continue
        if ep.name in handlers:
            logger.warning("action plug-in %r is registered twice; %s ignored", ep.name, ep.value)
            continue
        try:
            handler = _as_handler(ep.name, ep.load())
        except Exception as exc:  # a broken plug-in is reported where a workflow uses it
            logger.exception("action plug-in %r (%s) failed to load", ep.name, ep.value)
            broken[ep.name] = (
                f"entry point {ep.value!r} failed to load: {type(exc).__name__}: {exc}"
            )
            continue
        if handler is None:
            broken[ep.name] = f"entry point {ep.value!r} is not an ActionHandler or a callable"
            logger.error("action plug-in %r: %s", ep.name, broken[ep.name])
            continue
        handlers[ep.name] = handler
    return _Loaded(handlers, broken)


def get_action(name: str) -> ActionHandler[Any] | None:
    """The handler registered under `name` (built-in or plug-in), or None."""
    return _load().handlers.get(name)


def action_names() -> list[str]:
    """Every available action name, sorted."""
    return sorted(_load().handlers)


def load_error(name: str) -> str | None:
    """Why the plug-in `name` could not be loaded, or None."""
    return _load().broken.get(name)


def reload_actions() -> None:
    """Forget the loaded plug-ins; the next lookup reads the entry points again."""
    _load.cache_clear()


def unknown_action_hint(name: str) -> str:
    """A fix for an unknown action name: "did you mean ...? available: ..."."""
    names = action_names()
    close = difflib.get_close_matches(name, names, n=1, cutoff=0.6)
    hint = f"did you mean '{close[0]}'? " if close else ""
    return hint + "available: " + ", ".join(names)
