"""One exception hierarchy for everything in ``crypto`` that can go wrong.

Every error derives from :class:`CryptoError` and carries a ``sqlstate`` the proxy
copies into the ``ErrorResponse`` it sends the client. Messages name the object
(column, key id, tenant, master key id) and say what to do; they never contain
plaintext, key bytes, wrapped key bytes or ciphertext. Constructors take the
structured facts, not a free-form message, so a caller cannot smuggle a value in.

SQLSTATE choices (see docs/ENVELOPE.md, "Errors"):

=====================  =====  ==============================================
error                  code   why
=====================  =====  ==============================================
EnvelopeMalformed      XX001  stored value is not a v1 envelope: data_corrupted
EnvelopeTampered       XX001  GCM tag mismatch (tampered, moved, relabelled)
UnknownKey             XX001  stored value names a key the key store lacks
KeyDestroyed           55000  object_not_in_prerequisite_state: shredded
WrongTenant            42501  insufficient_privilege: another tenant's value
MasterKeyError         F0000  config_file_error: bad/missing master key spec
MasterKeyUnavailable   F0000  the master key a row is wrapped with is not loaded
KeyUnwrapFailed        XX001  a wrapped key in pgseal.keys fails authentication
KeyStoreError          58000  system_error: key store missing or inconsistent
BlindIndexError        22023  invalid_parameter_value: bad normaliser/length
=====================  =====  ==============================================
"""

from __future__ import annotations

__all__ = [
    "BlindIndexError",
    "CryptoError",
    "EnvelopeMalformed",
    "EnvelopeTampered",
    "KeyDestroyed",
    "KeyStoreError",
    "KeyUnwrapFailed",
    "MasterKeyError",
    "MasterKeyUnavailable",
    "TenantShredded",
    "UnknownKey",
    "WrongTenant",
]


class CryptoError(Exception):
    """Base of every crypto error; ``sqlstate`` is what the client is told."""

    sqlstate: str = "XX000"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r})"


class EnvelopeMalformed(CryptoError):
    """The value is not a well-formed version-1 envelope (short, wrong version)."""

    sqlstate = "XX001"

    def __init__(self, column: str, reason: str) -> None:
        super().__init__(
            f"value in column {column} is not a pgseal v1 envelope: {reason}; "
            "the stored value is corrupt or was never sealed by pgseal"
        )
        self.column = column
        self.reason = reason


class EnvelopeTampered(CryptoError):
    """AES-GCM authentication failed for the envelope."""

    sqlstate = "XX001"

    def __init__(self, column: str, key_id: int) -> None:
        super().__init__(
            f"envelope in column {column} under key id {key_id} failed authentication: "
            "it was modified, copied from another column, or relabelled with another key"
        )
        self.column = column
        self.key_id = key_id


class UnknownKey(CryptoError):
    """The envelope names a key id that the key store does not hold."""

    sqlstate = "XX001"

    def __init__(self, key_id: int) -> None:
        super().__init__(
            f"key id {key_id} is not in the key store (pgseal.keys); the value was sealed "
            "against another key store, or the service_dsn points at the wrong database"
        )
        self.key_id = key_id


class KeyDestroyed(CryptoError):
    """The key was shredded; values under it can never be opened again."""

    sqlstate = "55000"

    def __init__(self, key_id: int, tenant: str) -> None:
        super().__init__(
            f"key id {key_id} of tenant {tenant!r} has been destroyed (shredded); "
            "values sealed under it can no longer be opened"
        )
        self.key_id = key_id
        self.tenant = tenant


class TenantShredded(KeyDestroyed):
    """A write for a tenant whose keys were shredded: no new key is made for it."""

    def __init__(self, tenant: str) -> None:
        CryptoError.__init__(
            self,
            f"tenant {tenant!r} has been shredded; pgseal will not create new keys for it",
        )
        self.key_id = 0
        self.tenant = tenant


class WrongTenant(CryptoError):
    """The envelope's key belongs to a tenant other than the session's."""

    sqlstate = "42501"

    def __init__(self, column: str, key_id: int, tenant: str) -> None:
        # The owning tenant is deliberately not named: a session must not learn
        # which other businesses exist.
        super().__init__(
            f"value in column {column} (key id {key_id}) belongs to another tenant "
            f"than the session's tenant {tenant!r}"
        )
        self.column = column
        self.key_id = key_id
        self.tenant = tenant


class MasterKeyError(CryptoError):
    """A master key could not be loaded or used (spec, permissions, length)."""

    sqlstate = "F0000"


class MasterKeyUnavailable(MasterKeyError):
    """A key row is wrapped under a master key id that is not loaded."""

    def __init__(self, master_key_id: str, what: str) -> None:
        super().__init__(
            f"{what} is wrapped under master key {master_key_id}, which is not loaded; "
            "add it with --master-key (or master_key in config.yaml)"
        )
        self.master_key_id = master_key_id


class KeyUnwrapFailed(CryptoError):
    """A wrapped key failed authentication under its master key."""

    sqlstate = "XX001"

    def __init__(self, key_id: int, master_key_id: str) -> None:
        super().__init__(
            f"wrapped key id {key_id} failed authentication under master key "
            f"{master_key_id}: the pgseal.keys row was modified"
        )
        self.key_id = key_id
        self.master_key_id = master_key_id


class KeyStoreError(CryptoError):
    """The key store is missing, not initialised, or in an impossible state."""

    sqlstate = "58000"


class BlindIndexError(CryptoError):
    """A blind index was asked for with an unknown normaliser or bad length."""

    sqlstate = "22023"
