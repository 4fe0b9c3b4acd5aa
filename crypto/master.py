"""Master keys (KEKs): where they come from, their ids, and wrapping data keys.

A master key is 256 bits held only in process memory. Providers turn a spec
string into a :class:`MasterKey`:

* ``env:VAR``  -- the environment variable holds base64 of 32 bytes;
* ``file:PATH`` -- the file holds the same base64 text (or 32 raw bytes) and must
  not be accessible to group or others (``chmod 600``), else it is refused.

Other schemes (a KMS, an HSM) plug in with :func:`register_provider`; they
implement :class:`MasterKey` (``wrap``/``unwrap``) without ever exporting a key.

A master key's id is the first 8 bytes (16 hex digits) of
``HMAC-SHA256(key, b"pgseal master key id v1")``: stable, distinct per key, and
it reveals nothing about the key. Several master keys can be loaded at once in a
:class:`MasterKeyRing` (during rotation); the ring wraps with its *current* key
and unwraps with whichever key a row names.

Wrapping is AES-256-GCM: ``0x01 | nonce (12) | ciphertext + tag`` with
AAD ``b"pgseal:wrap:v1:" + key id (u64 BE) + version (u32 BE) + kind + b":" +
tenant``, so a wrapped key copied onto another row (other id, tenant, version
or kind) fails to unwrap.

Local key bytes live in a ``bytearray`` that :meth:`LocalMasterKey.wipe`
overwrites; an ``AESGCM`` object is built per wrap/unwrap (rare operations) so
that no long-lived copy outlives ``wipe()``. ``repr`` never shows key bytes.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import hmac
import os
import stat
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Final, Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from crypto.errors import KeyUnwrapFailed, MasterKeyError, MasterKeyUnavailable

__all__ = [
    "MASTER_ID_LABEL",
    "LocalMasterKey",
    "MasterKey",
    "MasterKeyProvider",
    "MasterKeyRing",
    "generate_master_key",
    "load_master_key",
    "load_master_keys",
    "master_key_id",
    "register_provider",
    "wrap_aad",
]

MASTER_ID_LABEL: Final = b"pgseal master key id v1"
WRAP_LABEL: Final = b"pgseal:wrap:v1:"
WRAP_VERSION: Final = 0x01
KEY_LEN: Final = 32


def master_key_id(material: bytes | bytearray) -> str:
    """The public id of a master key: 16 hex digits of an HMAC under it."""
    return hmac.new(material, MASTER_ID_LABEL, hashlib.sha256).digest()[:8].hex()


def wrap_aad(*, key_id: int, tenant: str, kind: str, version: int) -> bytes:
    """AAD binding a wrapped key to its row (id, version, kind, tenant)."""
    return (
        WRAP_LABEL
        + key_id.to_bytes(8, "big")
        + version.to_bytes(4, "big")
        + kind.encode("ascii")
        + b":"
        + tenant.encode("utf-8")
    )


class MasterKey(ABC):
    """A key-encryption key: wraps and unwraps data keys, never exports itself."""

    #: 16 hex digits, stored with every wrapped key (``pgseal.keys.master_key_id``).
    key_id: str
    #: The spec it came from without any secret (``env:VAR``, ``file:/path``).
    source: str

    @abstractmethod
    def wrap(self, material: bytes | bytearray, aad: bytes) -> bytes:
        """Encrypt a data key for storage."""

    @abstractmethod
    def unwrap(self, wrapped: bytes, aad: bytes) -> bytearray:
        """Decrypt a stored data key; raises ``InvalidTag`` if it does not verify."""

    def wipe(self) -> None:  # noqa: B027 - remote keys have nothing to wipe
        """Forget key material held in this process (no-op for remote keys)."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(key_id={self.key_id!r}, source={self.source!r})"


class LocalMasterKey(MasterKey):
    """A master key whose 32 bytes are in this process (env: and file: specs)."""

    def __init__(self, material: bytes | bytearray, source: str = "memory") -> None:
        if len(material) != KEY_LEN:
            raise MasterKeyError(
                f"master key from {source} is {len(material)} bytes; it must be {KEY_LEN}"
            )
        self._key = bytearray(material)
        self.key_id = master_key_id(self._key)
        self.source = source

    @classmethod
    def from_text(cls, text: str, source: str = "text") -> LocalMasterKey:
        """From base64 text, as printed by ``generate_master_key``."""
        return cls(_decode_key_text(text.encode("ascii", "replace"), source), source)

    @property
    def wiped(self) -> bool:
        return not any(self._key)

    def _aead(self) -> AESGCM:
        if self.wiped:
            raise MasterKeyError(f"master key {self.key_id} was wiped from memory")
        return AESGCM(self._key)

    def wrap(self, material: bytes | bytearray, aad: bytes) -> bytes:
        nonce = os.urandom(12)
        return bytes((WRAP_VERSION,)) + nonce + self._aead().encrypt(nonce, bytes(material), aad)

    def unwrap(self, wrapped: bytes, aad: bytes) -> bytearray:
        if len(wrapped) != 1 + 12 + KEY_LEN + 16 or wrapped[0] != WRAP_VERSION:
            raise InvalidTag
        return bytearray(self._aead().decrypt(wrapped[1:13], wrapped[13:], aad))

    def wipe(self) -> None:
        for i in range(len(self._key)):
            self._key[i] = 0

    def __reduce__(self) -> str | tuple[Any, ...]:
        raise TypeError("master keys cannot be pickled")


class MasterKeyProvider(Protocol):
    """Turns the location part of a spec (after ``scheme:``) into a master key."""

    def load(self, location: str) -> MasterKey: ...


def _decode_key_text(text: bytes, source: str) -> bytes:
    stripped = text.strip()
    candidates: list[bytes] = []
    with contextlib.suppress(binascii.Error, ValueError):
        candidates.append(base64.b64decode(stripped, validate=True))
    with contextlib.suppress(binascii.Error, ValueError):
        candidates.append(base64.urlsafe_b64decode(stripped))
    for decoded in candidates:
        if len(decoded) == KEY_LEN:
            return decoded
    raise MasterKeyError(
        f"master key from {source} is not base64 of {KEY_LEN} bytes; "
        "generate one with 'pgseal keys generate-master'"
    )


class EnvProvider:
    """``env:VAR``: base64 of 32 bytes in an environment variable."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        self._environ = environ

    def load(self, location: str) -> MasterKey:
        environ = os.environ if self._environ is None else self._environ
        source = f"env:{location}"
        if not location:
            raise MasterKeyError("master key spec 'env:' names no variable")
        value = environ.get(location)
        if not value:
            raise MasterKeyError(f"master key {source}: the variable is not set or empty")
        return LocalMasterKey(_decode_key_text(value.encode("ascii", "replace"), source), source)


class FileProvider:
    """``file:PATH``: base64 text (or 32 raw bytes) in a file only its owner can read."""

    def load(self, location: str) -> MasterKey:
        source = f"file:{location}"
        path = Path(location)
        try:
            # One descriptor for the check and the read, so the file cannot be
            # swapped between them.
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        except OSError as exc:
            raise MasterKeyError(f"master key {source}: cannot open ({exc.strerror})") from None
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise MasterKeyError(f"master key {source}: not a regular file")
            if st.st_mode & 0o077:
                raise MasterKeyError(
                    f"master key {source} is accessible by group or others "
                    f"(mode {stat.S_IMODE(st.st_mode):04o}); run chmod 600 on it"
                )
            data = os.read(fd, 4096)
        finally:
            os.close(fd)
        try:
            return LocalMasterKey(_decode_key_text(data, source), source)
        except MasterKeyError:
            if len(data) == KEY_LEN:
                return LocalMasterKey(data, source)
            raise


_PROVIDERS: dict[str, MasterKeyProvider] = {"env": EnvProvider(), "file": FileProvider()}


def register_provider(scheme: str, provider: MasterKeyProvider) -> None:
    """Make ``scheme:...`` specs load through ``provider`` (KMS/HSM plug-ins)."""
    _PROVIDERS[scheme] = provider


def load_master_key(spec: str) -> MasterKey:
    """Load one master key from a spec such as ``env:PGSEAL_MASTER_KEY``."""
    scheme, sep, location = spec.partition(":")
    provider = _PROVIDERS.get(scheme) if sep else None
    if provider is None:
        known = ", ".join(f"{s}:" for s in sorted(_PROVIDERS))
        # The spec itself may be a pasted key: never echo it.
        raise MasterKeyError(f"master key spec must start with one of {known}")
    return provider.load(location)


def load_master_keys(specs: Iterable[str]) -> MasterKeyRing:
    """Load several specs into a ring; the first one is the current key."""
    keys = [load_master_key(spec) for spec in specs]
    if not keys:
        raise MasterKeyError("no master key given (use --master-key env:VAR or file:PATH)")
    return MasterKeyRing(keys)


def generate_master_key() -> str:
    """A new random master key as base64 (what ``env:`` and ``file:`` expect)."""
    return base64.b64encode(os.urandom(KEY_LEN)).decode("ascii")


class MasterKeyRing:
    """Loaded master keys by id; wraps with ``current``, unwraps with the one named."""

    def __init__(self, keys: Sequence[MasterKey], current: str | None = None) -> None:
        if not keys:
            raise MasterKeyError("a master key ring needs at least one key")
        self._keys: dict[str, MasterKey] = {}
        for key in keys:
            self._keys.setdefault(key.key_id, key)
        current_id = keys[0].key_id if current is None else current
        if current_id not in self._keys:
            raise MasterKeyUnavailable(current_id, "the requested current master key")
        self._current = self._keys[current_id]

    @property
    def current(self) -> MasterKey:
        return self._current

    @property
    def ids(self) -> tuple[str, ...]:
        return tuple(self._keys)

    def get(self, key_id: str) -> MasterKey | None:
        return self._keys.get(key_id)

    def __contains__(self, key_id: object) -> bool:
        return key_id in self._keys

    def __iter__(self) -> Iterator[MasterKey]:
        return iter(self._keys.values())

    def __len__(self) -> int:
        return len(self._keys)

    def with_current(self, key_id: str) -> MasterKeyRing:
        """The same keys with ``key_id`` as the wrapping key (rotate-master)."""
        return MasterKeyRing(list(self._keys.values()), current=key_id)

    def wrap(
        self, material: bytes | bytearray, *, key_id: int, tenant: str, kind: str, version: int
    ) -> tuple[str, bytes]:
        """Wrap a data key under the current master key: (master key id, wrapped)."""
        aad = wrap_aad(key_id=key_id, tenant=tenant, kind=kind, version=version)
        return self._current.key_id, self._current.wrap(material, aad)

    def unwrap(
        self,
        master_id: str,
        wrapped: bytes,
        *,
        key_id: int,
        tenant: str,
        kind: str,
        version: int,
    ) -> bytearray:
        """Unwrap a stored key with the master key named by its row."""
        master = self._keys.get(master_id)
        if master is None:
            raise MasterKeyUnavailable(master_id, f"key id {key_id}")
        aad = wrap_aad(key_id=key_id, tenant=tenant, kind=kind, version=version)
        try:
            return master.unwrap(wrapped, aad)
        except InvalidTag:
            raise KeyUnwrapFailed(key_id, master_id) from None

    def wipe(self) -> None:
        for key in self._keys.values():
            key.wipe()

    def __repr__(self) -> str:
        return f"MasterKeyRing(current={self._current.key_id!r}, ids={list(self._keys)!r})"
