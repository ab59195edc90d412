"""Encryption at rest: FernetCipher through SQLStateStore (round trip, ciphertext in the
database, wrong key, rotation, no key), the settings that configure it, and open_store."""

from __future__ import annotations

import asyncio
import sqlite3
import zlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from llm_orchestrator.exceptions import ConfigurationError, StateError
from llm_orchestrator.settings import Settings
from llm_orchestrator.state import open_store
from llm_orchestrator.state.codec import BlobCodec, IdentityCipher
from llm_orchestrator.state.crypto import (
    FERNET_PREFIX,
    FernetCipher,
    generate_key,
    is_encrypted,
)
from llm_orchestrator.state.sql import SQLStateStore
from llm_orchestrator.state.store import StateStore
from tests.state.contract import StateStoreContract, completed, new_run

SECRET_INPUT = "input-PLAINTEXT-7f3a"
SECRET_OUTPUT = "output-PLAINTEXT-91c2"

OLD_KEY = generate_key()
NEW_KEY = generate_key()


def sqlite_url(path: Path) -> str:
    return f"sqlite+aiosqlite:///{path}"


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "state.db"


def _blobs(path: Path) -> dict[str, list[bytes]]:
    """Every stored blob, read from the tables directly."""
    connection = sqlite3.connect(path)
    try:
        return {
            "runs.inputs": [r[0] for r in connection.execute("SELECT inputs FROM runs")],
            "outputs.data": [r[0] for r in connection.execute("SELECT data FROM outputs")],
            "checkpoints.snapshot": [
                r[0] for r in connection.execute("SELECT snapshot FROM checkpoints")
            ],
        }
    finally:
        connection.close()


async def blobs(path: Path) -> dict[str, list[bytes]]:
    return await asyncio.to_thread(_blobs, path)


def readable(blob: bytes) -> bytes:
    """What anyone with the database file can read from a blob: its bytes, and what they
    decompress to if they are a zlib stream (deflate does not keep text byte-aligned)."""
    try:
        return blob + zlib.decompress(blob)
    except zlib.error:
        return blob


async def write_secret_run(store: StateStore, run_id: str = "run-1") -> None:
    await new_run(store, run_id, inputs={"question": SECRET_INPUT})
    await store.record_step(completed(run_id, "answer", {"text": SECRET_OUTPUT}))


async def assert_secret_run_reads_back(store: StateStore, run_id: str = "run-1") -> None:
    run = await store.get_run(run_id)
    assert run is not None and run.inputs == {"question": SECRET_INPUT}
    [step] = await store.get_steps(run_id)
    assert step.outputs == {"text": SECRET_OUTPUT}
    [checkpoint] = await store.list_checkpoints(run_id)
    _, restored = await store.load_checkpoint(checkpoint.id)
    assert [s.outputs for s in restored] == [{"text": SECRET_OUTPUT}]


class Opened:
    """Open SQLStateStores on one database with different key sets, closed at the end."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.stores: list[SQLStateStore] = []

    async def __call__(self, *keys: str) -> SQLStateStore:
        cipher = FernetCipher(list(keys)) if keys else None
        store = SQLStateStore(self.url, cipher=cipher)
        await store.open()
        self.stores.append(store)
        return store

    async def close(self) -> None:
        for store in self.stores:
            await store.close()


@pytest.fixture
async def opened(db_path: Path) -> AsyncIterator[Opened]:
    stores = Opened(sqlite_url(db_path))
    yield stores
    await stores.close()


# -- the cipher ----------------------------------------------------------------------------


def test_cipher_round_trip_and_marker() -> None:
    cipher = FernetCipher([NEW_KEY])
    token = cipher.encrypt(b"x\x9c some zlib bytes")
    assert token.startswith(FERNET_PREFIX) and is_encrypted(token)
    assert cipher.decrypt(token) == b"x\x9c some zlib bytes"
    assert not is_encrypted(BlobCodec().seal({"a": 1}, "test").data)


def test_rotate_reencrypts_with_the_current_key() -> None:
    old_token = FernetCipher([OLD_KEY]).encrypt(b"payload")
    rotated = FernetCipher([NEW_KEY, OLD_KEY]).rotate(old_token)
    assert rotated != old_token
    assert FernetCipher([NEW_KEY]).decrypt(rotated) == b"payload"
    # an unencrypted (legacy) blob is encrypted by rotate
    assert FernetCipher([NEW_KEY]).decrypt(FernetCipher([NEW_KEY]).rotate(b"x\x9c")) == b"x\x9c"
    with pytest.raises(StateError, match="not configured"):
        FernetCipher([NEW_KEY]).rotate(old_token)


def test_bad_keys_are_configuration_errors_without_key_material() -> None:
    bad = "not-a-key-SENSITIVE"
    with pytest.raises(ConfigurationError, match="key #2 is not a Fernet key") as info:
        FernetCipher([NEW_KEY, bad])
    assert bad not in str(info.value) and NEW_KEY not in str(info.value)
    with pytest.raises(ConfigurationError, match="at least one key"):
        FernetCipher([])
    with pytest.raises(ConfigurationError, match="list of keys"):
        FernetCipher(NEW_KEY)
    assert NEW_KEY not in repr(FernetCipher([NEW_KEY]))


def test_generate_key_makes_distinct_fernet_keys() -> None:
    key = generate_key()
    assert key != generate_key()
    Fernet(key)  # a valid key


def test_unencrypted_cipher_refuses_encrypted_data() -> None:
    token = FernetCipher([NEW_KEY]).encrypt(b"x")
    with pytest.raises(StateError, match=r"encrypted.*set LLMO_ENCRYPTION_KEY"):
        IdentityCipher().decrypt(token)
    assert IdentityCipher().decrypt(b"x\x9cabc") == b"x\x9cabc"


# -- through SQLStateStore -----------------------------------------------------------------


async def test_round_trip_and_only_ciphertext_in_the_database(
    opened: Opened, db_path: Path
) -> None:
    store = await opened(NEW_KEY)
    await write_secret_run(store)
    await assert_secret_run_reads_back(store)
    stored = await blobs(db_path)
    for column, values in stored.items():
        assert values, column
        for value in values:
            assert value.startswith(FERNET_PREFIX), column
            visible = readable(value)
            assert SECRET_INPUT.encode() not in visible and SECRET_OUTPUT.encode() not in visible
    # the snapshot decrypts to what the checkpoint captured
    [snapshot] = stored["checkpoints.snapshot"]
    assert "answer" in BlobCodec(FernetCipher([NEW_KEY])).unseal(snapshot)["steps"]


async def test_without_a_cipher_the_plaintext_is_visible(opened: Opened, db_path: Path) -> None:
    """The control for the test above: the plaintext check would catch unencrypted blobs."""
    await write_secret_run(await opened())
    stored = await blobs(db_path)
    assert any(SECRET_INPUT.encode() in readable(v) for v in stored["runs.inputs"])
    assert any(SECRET_OUTPUT.encode() in readable(v) for v in stored["outputs.data"])


async def test_a_wrong_key_is_a_clear_state_error(opened: Opened) -> None:
    await write_secret_run(await opened(OLD_KEY))
    other = await opened(NEW_KEY)
    with pytest.raises(StateError, match="encrypted with a key that is not configured") as info:
        await other.get_run("run-1")
    message = str(info.value)
    assert "LLMO_ENCRYPTION_KEY" in message
    assert OLD_KEY not in message and NEW_KEY not in message
    with pytest.raises(StateError, match="key that is not configured"):
        await other.get_steps("run-1")


async def test_rotated_keys_read_old_data_and_write_with_the_new_key(
    opened: Opened, db_path: Path
) -> None:
    await write_secret_run(await opened(OLD_KEY), "old-run")
    rotated = await opened(NEW_KEY, OLD_KEY)
    await assert_secret_run_reads_back(rotated, "old-run")
    before = await blobs(db_path)
    await new_run(rotated, "new-run", inputs={"question": "fresh"})
    after = await blobs(db_path)
    [new_inputs] = [b for b in after["runs.inputs"] if b not in before["runs.inputs"]]
    assert Fernet(NEW_KEY).decrypt(new_inputs)  # written with the new key ...
    new_only = await opened(NEW_KEY)
    assert (await new_only.get_run("new-run")).inputs == {"question": "fresh"}  # type: ignore[union-attr]
    with pytest.raises(StateError, match="not configured"):  # ... old data needs the old key
        await new_only.get_run("old-run")


async def test_data_written_before_encryption_stays_readable(opened: Opened) -> None:
    await write_secret_run(await opened())
    await assert_secret_run_reads_back(await opened(NEW_KEY))


async def test_unencrypted_data_can_be_refused(opened: Opened) -> None:
    await write_secret_run(await opened())
    strict = SQLStateStore(opened.url, cipher=FernetCipher([NEW_KEY], accept_unencrypted=False))
    async with strict:
        with pytest.raises(StateError, match="not encrypted"):
            await strict.get_run("run-1")


async def test_no_key_configured_but_encrypted_data_through_open_store(
    opened: Opened, settings: Settings
) -> None:
    settings = settings.model_copy(update={"database_url": opened.url})
    await write_secret_run(await opened(NEW_KEY))
    store = await open_store(settings)
    try:
        with pytest.raises(StateError, match=r"encrypted.*set LLMO_ENCRYPTION_KEY"):
            await store.get_run("run-1")
    finally:
        await store.close()


async def test_no_key_configured_but_encrypted_data_with_the_default_cipher(
    opened: Opened,
) -> None:
    await write_secret_run(await opened(NEW_KEY))
    plain = await opened()
    with pytest.raises(StateError) as info:
        await plain.get_run("run-1")
    assert "LLMO_ENCRYPTION_KEY" in str(info.value)


# -- settings and open_store ---------------------------------------------------------------


def test_settings_combine_the_shortcut_and_the_nested_keys(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("LLMO_ENCRYPTION_KEY", f"{NEW_KEY}, {OLD_KEY}")
    monkeypatch.setenv("LLMO_STATE__ENCRYPTION_KEYS", f'["{OLD_KEY}", "{generate_key()}"]')
    settings = Settings()
    keys = settings.encryption_keys()
    assert keys[:2] == [NEW_KEY, OLD_KEY] and len(keys) == 3
    for text in (repr(settings), str(settings), settings.model_dump_json()):
        assert NEW_KEY not in text and OLD_KEY not in text
    monkeypatch.delenv("LLMO_ENCRYPTION_KEY")
    monkeypatch.delenv("LLMO_STATE__ENCRYPTION_KEYS")
    assert Settings().encryption_keys() == []


def test_settings_redis_url(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().redis() is None
    monkeypatch.setenv("LLMO_STATE__REDIS_URL", "redis://127.0.0.1:1/0")
    assert Settings().redis() == "redis://127.0.0.1:1/0"
    monkeypatch.setenv("LLMO_REDIS_URL", "redis://127.0.0.1:2/0")
    settings = Settings()
    assert settings.redis() == "redis://127.0.0.1:2/0"
    assert settings.state.redis_ttl_seconds == 300


async def test_open_store_encrypts_with_the_configured_key(
    monkeypatch: pytest.MonkeyPatch, db_path: Path
) -> None:
    monkeypatch.setenv("LLMO_ENCRYPTION_KEY", NEW_KEY)
    monkeypatch.setenv("LLMO_DATABASE_URL", sqlite_url(db_path))
    store = await open_store(Settings())
    try:
        assert isinstance(store, SQLStateStore)
        await write_secret_run(store)
        await assert_secret_run_reads_back(store)
    finally:
        await store.close()
    assert all(
        v.startswith(FERNET_PREFIX) for values in (await blobs(db_path)).values() for v in values
    )


# -- the whole contract on an encrypted store ----------------------------------------------


@pytest.fixture
async def store(db_path: Path) -> AsyncIterator[SQLStateStore]:
    async with SQLStateStore(sqlite_url(db_path), cipher=FernetCipher([NEW_KEY])) as opened:
        yield opened


@pytest.fixture
async def second_store(store: SQLStateStore, db_path: Path) -> AsyncIterator[SQLStateStore]:
    cipher = FernetCipher([NEW_KEY, OLD_KEY])
    async with SQLStateStore(sqlite_url(db_path), cipher=cipher) as opened:
        yield opened


class TestEncryptedSQLiteStore(StateStoreContract):
    pass
