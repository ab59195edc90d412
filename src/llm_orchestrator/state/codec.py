"""How stored values become bytes: validated canonical JSON, then zlib, then a `Cipher`.

    value ──check──▶ canonical JSON (UTF-8) ──sha256──▶ content hash
                          │
                          └─zlib─▶ Cipher.encrypt ─▶ stored blob

Only JSON-native values are accepted (str, int, float, bool, None, lists, dicts with text
keys; no NaN or infinity), so what is read back equals what was written. Anything else raises
`StateSerializationError` naming where the value came from and the path inside it. No pickle.

The content hash is taken over the canonical JSON, not over the stored bytes, so identical
values share one blob whatever the zlib build or (later) the cipher does to the bytes; the
hash is checked again when a blob is read. The cipher is the identity today: the seam exists so
encryption at rest can be added without touching the store.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any, Protocol

from llm_orchestrator.exceptions import StateError, StateSerializationError

__all__ = [
    "BlobCodec",
    "Cipher",
    "IdentityCipher",
    "Sealed",
    "check_json",
    "dumps",
    "loads",
]


class Cipher(Protocol):
    """Encrypts blobs at rest. Must round-trip: decrypt(encrypt(b)) == b."""

    def encrypt(self, data: bytes) -> bytes: ...

    def decrypt(self, data: bytes) -> bytes: ...


class IdentityCipher:
    """No encryption (the default)."""

    def encrypt(self, data: bytes) -> bytes:
        return data

    def decrypt(self, data: bytes) -> bytes:
        if data.startswith(b"gAAAAA"):  # a Fernet token: written with encryption on
            raise StateError(
                "stored data is encrypted, but no encryption key is configured; set "
                "LLMO_ENCRYPTION_KEY to the key it was written with"
            )
        return data


# -- validation ----------------------------------------------------------------------------


def _fix_for(value: object) -> str:
    if isinstance(value, datetime | date | time):
        return "convert it to text (value.isoformat())"
    if isinstance(value, timedelta):
        return "convert it to a number of seconds (value.total_seconds())"
    if isinstance(value, bytes | bytearray | memoryview):
        return "decode it to text or base64-encode it"
    if isinstance(value, tuple | set | frozenset):
        return "convert it to a list"
    if isinstance(value, Decimal):
        return "convert it to a float or to text"
    if hasattr(value, "model_dump"):
        return "convert it with .model_dump(mode='json')"
    if dataclasses.is_dataclass(value):
        return "convert it to a dict of JSON values"
    return "convert it to text, a number, a list or a dict"


def _segment(key: str) -> str:
    return f".{key}" if key.isidentifier() else f"[{json.dumps(key, ensure_ascii=False)}]"


def _find_problem(
    value: object, path: str, ancestors: set[int], strings: bool
) -> tuple[str, str] | None:
    """The first (path, problem) that keeps `value` from being stored as JSON, else None."""
    if value is None or isinstance(value, bool | int):
        return None
    if isinstance(value, str):
        if strings:
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                return path, "text contains a lone surrogate; it cannot be stored as UTF-8"
        return None
    if isinstance(value, float):
        if math.isfinite(value):
            return None
        return path, f"float {value!r} is not JSON; use null or a finite number"
    if isinstance(value, list | dict):
        if id(value) in ancestors:
            return path, "the value contains itself (a reference cycle)"
        ancestors.add(id(value))
        try:
            items: Iterator[tuple[str, object]]
            if isinstance(value, list):
                items = ((f"{path}[{i}]", v) for i, v in enumerate(value))
            else:
                for key in value:
                    if not isinstance(key, str):
                        return path, (
                            f"key {key!r} is {type(key).__name__}, not text; "
                            "JSON object keys must be strings"
                        )
                items = ((path + _segment(k), v) for k, v in value.items())
            for sub_path, item in items:
                found = _find_problem(item, sub_path, ancestors, strings)
                if found is not None:
                    return found
            return None
        finally:
            ancestors.discard(id(value))
    return path, f"{type(value).__name__} is not JSON; {_fix_for(value)}"


def check_json(value: object, where: str, *, root: str = "$") -> None:
    """Raise `StateSerializationError` ("{where} at $.a[2]: ...") unless `value` is JSON."""
    try:
        found = _find_problem(value, root, set(), strings=False)
    except RecursionError as exc:
        raise StateSerializationError(f"{where}: the value is nested too deeply") from exc
    if found is not None:
        path, problem = found
        raise StateSerializationError(f"{where} at {path}: {problem}")


def _check_outputs(value: object, where: str, strings: bool) -> None:
    """Like check_json, but names the output: "{where}, output 'meta' at $.when: ..."."""
    if not isinstance(value, Mapping):
        check_json(value, where)
        return
    for name, item in value.items():
        if not isinstance(name, str):
            raise StateSerializationError(
                f"{where}: output name {name!r} is {type(name).__name__}, not text"
            )
        try:
            found = _find_problem(item, "$", set(), strings)
        except RecursionError as exc:
            raise StateSerializationError(
                f"{where}, output '{name}': the value is nested too deeply"
            ) from exc
        if found is not None:
            path, problem = found
            raise StateSerializationError(f"{where}, output '{name}' at {path}: {problem}")


def _canonical(value: object, where: str, *, outputs: bool = False) -> bytes:
    """Canonical JSON bytes of an already checked value."""
    try:
        text = json.dumps(
            value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
        )
    except (ValueError, TypeError, RecursionError) as exc:
        raise StateSerializationError(f"{where}: cannot be stored as JSON: {exc}") from exc
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError as exc:
        # the cheap check skipped text; look again, this time at every string
        try:
            if outputs:
                _check_outputs(value, where, strings=True)
            else:
                found = _find_problem(value, "$", set(), strings=True)
                if found is not None:
                    raise StateSerializationError(f"{where} at {found[0]}: {found[1]}")
        except StateSerializationError as located:
            raise located from exc
        raise StateSerializationError(f"{where}: text cannot be stored as UTF-8: {exc}") from exc


def _fast_raw(value: object) -> bytes | None:
    """Canonical JSON bytes when `value` survives a JSON round trip unchanged (the common
    case, checked at C speed); None sends the caller to the walk that names the problem."""
    try:
        text = json.dumps(
            value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
        )
        if json.loads(text) != value:  # int keys, tuples: not stored exactly
            return None
        return text.encode("utf-8")
    except (ValueError, TypeError, RecursionError, UnicodeEncodeError):
        return None


def dumps(value: object, where: str) -> str:
    """Validated canonical JSON text (sorted keys, no spaces)."""
    raw = _fast_raw(value)
    if raw is not None:
        return raw.decode("utf-8")
    check_json(value, where)
    return _canonical(value, where).decode("utf-8")


def loads(text: str) -> Any:
    """Parse JSON text written by `dumps`."""
    return json.loads(text)


# -- blobs ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Sealed:
    """A value ready to store: the blob, the content hash of its JSON and the blob's size."""

    data: bytes
    hash: str
    size: int


class BlobCodec:
    """Turns values into stored blobs and back (JSON → zlib → cipher)."""

    def __init__(self, cipher: Cipher | None = None, *, level: int = 6) -> None:
        self.cipher: Cipher = cipher if cipher is not None else IdentityCipher()
        self.level = level

    def content_hash(self, raw: bytes) -> str:
        """The key a blob is stored under (sha256 of its canonical JSON)."""
        return hashlib.sha256(raw).hexdigest()

    def seal(self, value: object, where: str, *, outputs: bool = False) -> Sealed:
        """Validate and encode `value`; `outputs=True` names the output in errors."""
        raw = _fast_raw(value)
        if raw is None:
            if outputs:
                _check_outputs(value, where, strings=False)
            else:
                check_json(value, where)
            raw = _canonical(value, where, outputs=outputs)
        data = self.cipher.encrypt(zlib.compress(raw, self.level))
        return Sealed(data=data, hash=self.content_hash(raw), size=len(data))

    def unseal(self, data: bytes, *, expected_hash: str | None = None) -> Any:
        """Decode a blob; with `expected_hash`, refuse one whose content does not match."""
        try:
            raw = zlib.decompress(self.cipher.decrypt(data))
        except zlib.error as exc:
            raise StateError(f"stored blob {expected_hash or ''} is corrupt: {exc}") from exc
        if expected_hash is not None and self.content_hash(raw) != expected_hash:
            raise StateError(
                f"stored outputs blob {expected_hash} does not match its hash: the database "
                "was changed outside llm-orchestrator or is corrupt"
            )
        return json.loads(raw)
