"""Typed settings: `llm-orchestrator.yaml` overridden by `LLMO_*` environment variables.

Precedence (highest first): environment (`LLMO_DEFAULT_PROVIDER`,
`LLMO_PROVIDERS__OPENAI__BASE_URL`, ...), then the config file, then the defaults here. Vendor
keys are also read from the vendors' usual variables (`OPENAI_API_KEY`, `ANTHROPIC_API_KEY`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from llm_orchestrator.exceptions import ConfigurationError

CONFIG_FILE_NAME = "llm-orchestrator.yaml"

ProviderType = Literal["openai", "anthropic", "openai_compatible", "local"]

#: The environment variable each provider type reads its key from by default.
DEFAULT_KEY_ENV: dict[str, str | None] = {
    "openai": "OPENAI_API_KEY",
    "anthropic": "ANTHROPIC_API_KEY",
    "openai_compatible": None,
    "local": None,
}

#: The model a step gets when it names neither a model nor a provider default.
DEFAULT_MODELS: dict[str, str] = {
    "openai": "gpt-4o-mini",
    "anthropic": "claude-haiku-4-5",
    "openai_compatible": "default",
    "local": "gemma3-270m",
}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RateLimits(_Strict):
    """Shared by every run in the process, per provider instance."""

    requests_per_minute: float | None = Field(default=None, gt=0)
    tokens_per_minute: float | None = Field(default=None, gt=0)


class CircuitBreakerSettings(_Strict):
    #: consecutive failed calls (after retries are counted one by one) that open the circuit
    failure_threshold: int = Field(default=5, ge=1)
    #: seconds the circuit stays open before one trial call is let through (half-open)
    recovery_seconds: float = Field(default=30.0, gt=0)


class ProviderSettings(_Strict):
    type: ProviderType
    api_key: SecretStr | None = None
    #: environment variable holding the key; defaults to the vendor's usual one
    api_key_env: str | None = None
    base_url: str | None = None
    default_model: str | None = None
    #: per-request timeout of the HTTP call
    timeout_seconds: float = Field(default=60.0, gt=0)
    rate_limits: RateLimits = Field(default_factory=RateLimits)
    circuit_breaker: CircuitBreakerSettings = Field(default_factory=CircuitBreakerSettings)
    #: local provider only: path of a .gguf file to load instead of the bundled model
    model_path: str | None = None
    #: local provider only: context window
    n_ctx: int = Field(default=2048, ge=256)
    #: local provider only: "completion" continues the messages as plain text (right for base
    #: models such as the bundled Gemma 3 270M); "chat" applies the chat template
    #: `chat_format`. Default: completion for the bundled model, chat for `model_path`.
    prompt_format: Literal["completion", "chat"] | None = None
    #: local provider only: llama-cpp chat template used in "chat" mode
    chat_format: str = "gemma"

    def key_env(self) -> str | None:
        return self.api_key_env or DEFAULT_KEY_ENV[self.type]

    def resolve_api_key(self) -> str | None:
        if self.api_key is not None:
            return self.api_key.get_secret_value()
        env = self.key_env()
        return os.environ.get(env) if env else None

    def model_or_default(self, model: str | None) -> str:
        return model or self.default_model or DEFAULT_MODELS[self.type]


class PriceSettings(_Strict):
    input_per_mtok: float = Field(ge=0)
    output_per_mtok: float = Field(ge=0)


class Limits(_Strict):
    max_steps: int = Field(default=100, ge=1)
    max_prompt_chars: int = Field(default=50_000, ge=1)
    max_input_bytes: int = Field(default=1_048_576, ge=1)


class StateSettings(_Strict):
    """Where runs are kept. Default: a SQLite file under `home`."""

    #: SQLAlchemy async URL: sqlite+aiosqlite:///path.db or postgresql+asyncpg://u:p@h/db
    #: (LLMO_DATABASE_URL); default sqlite under `home`
    database_url: str | None = None
    #: PostgreSQL pool: connections kept open, the most at once (max), how long to wait for
    #: one, and the age after which a connection is replaced; a dead connection is detected
    #: (pre-ping) and replaced when it is taken from the pool
    pool_min_size: int = Field(default=5, ge=0)
    pool_max_size: int = Field(default=20, ge=1)
    pool_timeout_seconds: float = Field(default=5.0, gt=0)
    pool_recycle_seconds: float = Field(default=1800.0, gt=0)
    #: SQLite busy timeout
    busy_timeout_seconds: float = Field(default=30.0, gt=0)
    #: checkpoints kept per run beyond which older ones are pruned ...
    checkpoint_keep_last: int = Field(default=10, ge=1)
    #: ... once they are also older than this
    checkpoint_max_age_hours: float = Field(default=24.0, gt=0)
    #: a run's owner renews its lease every lease_seconds / 3; an expired lease means the
    #: owner died and the run may be recovered
    lease_seconds: float = Field(default=30.0, gt=0)
    #: `llm-orchestrator run` first resumes interrupted runs
    recover_on_start: bool = False
    #: Fernet keys encrypting outputs, run inputs and checkpoints at rest
    #: (LLMO_STATE__ENCRYPTION_KEYS, a JSON list): the first encrypts, every one decrypts, so
    #: a new key goes first and old ones stay until no data uses them. Empty: no encryption.
    #: See also the shortcut LLMO_ENCRYPTION_KEY.
    encryption_keys: list[SecretStr] = Field(default_factory=list)
    #: redis://[:password@]host:port/db caching the state of active runs
    #: (LLMO_STATE__REDIS_URL, or the shortcut LLMO_REDIS_URL); unset: no cache
    redis_url: str | None = None
    #: how long a cached entry of an active run lives in Redis
    redis_ttl_seconds: float = Field(default=300.0, gt=0)


EmbedderType = Literal["local", "openai", "openai_compatible", "cohere"]

#: instance names that exist without configuration (named after their type)
BUILTIN_EMBEDDERS: tuple[EmbedderType, ...] = ("local", "openai", "cohere")

DEFAULT_EMBEDDING_MODELS: dict[str, str] = {
    "local": "all-MiniLM-L6-v2",
    "openai": "text-embedding-3-small",
    "openai_compatible": "default",
    "cohere": "embed-v4.0",
}
DEFAULT_EMBEDDING_KEY_ENV: dict[str, str | None] = {
    "local": None,
    "openai": "OPENAI_API_KEY",
    "openai_compatible": None,
    "cohere": "COHERE_API_KEY",
}
#: read when `base_url` is unset (the SDKs' own variables)
BASE_URL_ENV: dict[str, str] = {"openai": "OPENAI_BASE_URL", "cohere": "CO_API_URL"}


class EmbedderSettings(_Strict):
    """One embedder instance (`embedders:` in the config file)."""

    type: EmbedderType
    api_key: SecretStr | None = None
    #: environment variable holding the key; default: the vendor's usual one
    api_key_env: str | None = None
    base_url: str | None = None
    default_model: str | None = None
    timeout_seconds: float = Field(default=60.0, gt=0)
    #: client-side limits and circuit breaker (remote embedders only)
    rate_limits: RateLimits = Field(default_factory=RateLimits)
    circuit_breaker: CircuitBreakerSettings = Field(default_factory=CircuitBreakerSettings)

    def key_env(self) -> str | None:
        return self.api_key_env or DEFAULT_EMBEDDING_KEY_ENV[self.type]

    def resolve_api_key(self) -> str | None:
        if self.api_key is not None:
            return self.api_key.get_secret_value()
        env = self.key_env()
        return os.environ.get(env) if env else None

    def resolve_base_url(self) -> str | None:
        if self.base_url:
            return self.base_url
        env = BASE_URL_ENV.get(self.type)
        return (os.environ.get(env) or None) if env else None

    def model_or_default(self, model: str | None = None) -> str:
        return model or self.default_model or DEFAULT_EMBEDDING_MODELS[self.type]


# -- vector stores ------------------------------------------------------------------------


class ChromaConfig(_Strict):
    type: Literal["chroma"]
    #: embedded store directory; relative paths are under LLMO_HOME
    path: str | None = None
    #: a Chroma server (`chroma run`); give host or path, not both
    host: str | None = None
    port: int = Field(default=8000, ge=1, le=65535)
    ssl: bool = False

    @model_validator(mode="after")
    def _one_location(self) -> ChromaConfig:
        if self.path is not None and self.host is not None:
            raise ValueError("give either path (embedded) or host (server), not both")
        return self


class QdrantConfig(_Strict):
    type: Literal["qdrant"]
    #: local mode (embedded) directory; relative paths are under LLMO_HOME
    path: str | None = None
    #: a Qdrant server, e.g. http://127.0.0.1:6333
    url: str | None = None
    api_key: SecretStr | None = None
    timeout_seconds: float = Field(default=30.0, gt=0)

    @model_validator(mode="after")
    def _one_location(self) -> QdrantConfig:
        if (self.path is None) == (self.url is None):
            raise ValueError("give exactly one of path (local mode) or url (server)")
        return self


class PgVectorConfig(_Strict):
    """PostgreSQL with the pgvector extension; one table per index."""

    type: Literal["pgvector"]
    #: postgresql://user:password@host:port/database (the extension must be available)
    url: str
    #: schema the index tables live in (created if missing)
    db_schema: str = "llmo_vectors"
    #: PostgreSQL text search configuration for keyword/hybrid search
    text_search_config: str = "english"
    pool_size: int = Field(default=5, ge=1)
    #: HNSW candidates per search (pgvector's `hnsw.ef_search`; at least top_k is used):
    #: higher finds more of the true nearest neighbours, slower
    hnsw_ef_search: int = Field(default=100, ge=1, le=1000)


class PineconeConfig(_Strict):
    """Pinecone (serverless); the API key comes from here or PINECONE_API_KEY."""

    type: Literal["pinecone"]
    api_key: SecretStr | None = None
    #: control-plane host; None means Pinecone's public API
    host: str | None = None
    cloud: str = "aws"
    region: str = "us-east-1"
    timeout_seconds: float = Field(default=30.0, gt=0)


class WeaviateConfig(_Strict):
    """A Weaviate v4 server: REST on `url`, gRPC on `grpc_host`:`grpc_port`."""

    type: Literal["weaviate"]
    #: e.g. http://127.0.0.1:8080
    url: str
    #: defaults to the host of `url`
    grpc_host: str | None = None
    grpc_port: int = Field(default=50051, ge=1, le=65535)
    api_key: SecretStr | None = None
    timeout_seconds: float = Field(default=30.0, gt=0)


VectorStoreConfig = Annotated[
    ChromaConfig | QdrantConfig | PgVectorConfig | PineconeConfig | WeaviateConfig,
    Field(discriminator="type"),
]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="LLMO_", env_nested_delimiter="__", extra="forbid", case_sensitive=False
    )

    home: Path = Field(default_factory=lambda: Path.home() / ".llm-orchestrator")
    #: provider instance a step uses when it names none; unset means: openai if OPENAI_API_KEY
    #: is set, else anthropic if ANTHROPIC_API_KEY is set, else local
    default_provider: str | None = None
    providers: dict[str, ProviderSettings] = Field(default_factory=dict)
    prices: dict[str, PriceSettings] = Field(default_factory=dict)
    limits: Limits = Field(default_factory=Limits)
    #: default for a run's max_concurrency when the workflow sets none
    max_concurrency: int = Field(default=16, ge=1)
    state: StateSettings = Field(default_factory=StateSettings)
    #: named embedders (local, openai, openai_compatible, cohere) for `embed` steps
    embedders: dict[str, EmbedderSettings] = Field(default_factory=dict)
    #: named vector stores (chroma, qdrant); `default` is embedded Chroma under home
    vector_stores: dict[str, VectorStoreConfig] = Field(default_factory=dict)
    #: shortcut for state.database_url (LLMO_DATABASE_URL)
    database_url: str | None = None
    #: shortcut for state.encryption_keys (LLMO_ENCRYPTION_KEY): one Fernet key, or several
    #: comma-separated, the first being the current one; they come before state's keys
    encryption_key: SecretStr | None = None
    #: shortcut for state.redis_url (LLMO_REDIS_URL)
    redis_url: str | None = None

    def database(self) -> str:
        url = self.database_url or self.state.database_url
        return url or f"sqlite+aiosqlite:///{self.home / 'state.db'}"

    def encryption_keys(self) -> list[str]:
        """Every configured encryption key, current first: LLMO_ENCRYPTION_KEY's, then
        state.encryption_keys (duplicates dropped). Secret: never log the result."""
        keys: list[str] = []
        if self.encryption_key is not None:
            keys.extend(self.encryption_key.get_secret_value().split(","))
        keys.extend(key.get_secret_value() for key in self.state.encryption_keys)
        return list(dict.fromkeys(key.strip() for key in keys if key.strip()))

    def redis(self) -> str | None:
        """The Redis URL caching active runs (LLMO_REDIS_URL, else state.redis_url), if any."""
        return self.redis_url or self.state.redis_url

    @field_validator("home", mode="after")
    @classmethod
    def _expand_home(cls, value: Path) -> Path:
        return value.expanduser()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # the config file arrives as init kwargs; the environment overrides it
        return (env_settings, init_settings)

    def provider(self, name: str) -> ProviderSettings | None:
        """The named instance: from the config, or a built-in one named after its type."""
        found = self.providers.get(name)
        if found is not None:
            return found
        if name in ("openai", "anthropic", "local"):
            return ProviderSettings(type=name)
        return None

    def default_provider_name(self) -> str:
        if self.default_provider:
            return self.default_provider
        for name in ("openai", "anthropic"):
            cfg = self.provider(name)
            if cfg is not None and cfg.resolve_api_key():
                return name
        return "local"


def find_config_file(explicit: Path | None = None) -> Path | None:
    if explicit is not None:
        if not explicit.is_file():
            raise ConfigurationError(f"config file {explicit} does not exist")
        return explicit
    env = os.environ.get("LLMO_CONFIG")
    if env:
        return find_config_file(Path(env))
    candidate = Path.cwd() / CONFIG_FILE_NAME
    return candidate if candidate.is_file() else None


def load_settings(config_file: Path | None = None) -> Settings:
    """Read the config file (if any) and the environment; errors name the file and field."""
    path = find_config_file(config_file)
    data: dict[str, Any] = {}
    if path is not None:
        try:
            loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
        except yaml.YAMLError as exc:
            raise ConfigurationError(f"{path}: not valid YAML: {exc}") from exc
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigurationError(f"{path}: the top level must be a mapping of settings")
        data = loaded or {}
    try:
        return Settings(**data)
    except ValidationError as exc:
        source = str(path) if path else "environment (LLMO_*)"
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
        )
        raise ConfigurationError(f"{source}: invalid settings: {problems}") from exc
