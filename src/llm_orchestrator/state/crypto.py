"""Encryption at rest for stored blobs (outputs, run inputs, checkpoint snapshots).

`FernetCipher` is the codec's `Cipher` on `cryptography`'s `MultiFernet` (AES-128-CBC with an
HMAC-SHA256 tag: authenticated, so a changed blob is refused, never misread):

    keys = [current, older, ...]   (LLMO_ENCRYPTION_KEY="current,older")
    encrypt  -> with `current`
    decrypt  -> with whichever key opens the token
    rotate   -> decrypt with any key, encrypt again with `current`

Key material never appears in messages or logs: keys are named by their position only.

A Fernet token always starts with `FERNET_PREFIX` (version byte 0x80 and the high bytes of a
timestamp, base64-encoded), which no zlib stream does (they start with 0x78). That marker is
how a blob written without a cipher is told apart from an encrypted one, both here (old
unencrypted data stays readable after encryption is turned on) and by the codec's default
`IdentityCipher`, which refuses encrypted data with a clear message when no key is configured.
"""

from __future__ import annotations

from collections.abc import Sequence

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from llm_orchestrator.exceptions import ConfigurationError, StateError

__all__ = [
    "ENCRYPTION_KEY_ENV",
    "FERNET_PREFIX",
    "FernetCipher",
    "generate_key",
    "is_encrypted",
]

#: the environment variable holding the key(s), named in every message
ENCRYPTION_KEY_ENV = "LLMO_ENCRYPTION_KEY"

#: how every Fernet token starts (until the year 2106)
FERNET_PREFIX = b"gAAAAA"

_ADD_KEY_HINT = (
    f"add the key it was written with to {ENCRYPTION_KEY_ENV} "
    "(comma-separated, the current key first)"
)


def generate_key() -> str:
    """A new random Fernet key (url-safe base64 text), suitable for LLMO_ENCRYPTION_KEY."""
    return Fernet.generate_key().decode("ascii")


def is_encrypted(data: bytes) -> bool:
    """Whether a stored blob is a Fernet token (as opposed to a plain zlib stream)."""
    return data.startswith(FERNET_PREFIX)


def _fernet(key: str, position: int) -> Fernet:
    """A Fernet for one configured key; a bad key is a configuration error naming its place."""
    try:
        return Fernet(key.strip())
    except (ValueError, TypeError) as exc:  # binascii.Error is a ValueError
        raise ConfigurationError(
            f"{ENCRYPTION_KEY_ENV}: key #{position} is not a Fernet key (32 bytes of url-safe "
            "base64, 44 characters); generate one with `python -c 'from "
            "llm_orchestrator.state.crypto import generate_key; print(generate_key())'`"
        ) from exc


class FernetCipher:
    """Authenticated encryption of blobs with rotating keys: the first key encrypts, every
    key decrypts.

    `accept_unencrypted` (default True) lets blobs written before encryption was turned on
    be read as they are; set it False to refuse any blob that is not encrypted.
    """

    def __init__(self, keys: Sequence[str], *, accept_unencrypted: bool = True) -> None:
        if isinstance(keys, str):
            raise ConfigurationError(
                f"{ENCRYPTION_KEY_ENV}: FernetCipher takes a list of keys, not one string"
            )
        if not keys:
            raise ConfigurationError(
                f"{ENCRYPTION_KEY_ENV}: encryption needs at least one key; generate one with "
                "llm_orchestrator.state.crypto.generate_key()"
            )
        self._fernet = MultiFernet([_fernet(key, i) for i, key in enumerate(keys, start=1)])
        self.key_count = len(keys)
        self.accept_unencrypted = accept_unencrypted

    def __repr__(self) -> str:
        return f"FernetCipher(<{self.key_count} key(s)>)"

    def encrypt(self, data: bytes) -> bytes:
        """A Fernet token of `data`, made with the first (current) key."""
        return self._fernet.encrypt(data)

    def decrypt(self, data: bytes) -> bytes:
        """The plaintext of a token; unencrypted (legacy) blobs pass through if accepted."""
        if not is_encrypted(data):
            if self.accept_unencrypted:
                return data
            raise StateError(
                "stored data is not encrypted, and this store refuses unencrypted data "
                "(accept_unencrypted=False)"
            )
        try:
            return self._fernet.decrypt(data)
        except InvalidToken as exc:
            raise StateError(
                "stored data is encrypted with a key that is not configured (or was altered); "
                + _ADD_KEY_HINT
            ) from exc

    def rotate(self, data: bytes) -> bytes:
        """`data` encrypted again with the current key (an unencrypted blob is encrypted)."""
        if not is_encrypted(data):
            return self.encrypt(self.decrypt(data))
        try:
            return self._fernet.rotate(data)
        except InvalidToken as exc:
            raise StateError(
                "cannot re-encrypt stored data: it is encrypted with a key that is not "
                "configured (or was altered); " + _ADD_KEY_HINT
            ) from exc
