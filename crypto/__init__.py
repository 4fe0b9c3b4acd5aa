"""pgseal crypto: sealed field values under per-tenant keys.

Modules: ``envelope`` (the v1 format, seal/open), ``master`` (master-key
providers and ring), ``store`` (wrapped keys in ``pgseal.keys``), ``cache``
(TTL key cache, single flight, LISTEN/NOTIFY revocation), ``blind_index``,
``rotation`` (rotate-master, rotate, shred, list) and ``field`` (the
:class:`FieldCrypto` facade the proxy and rules use). Nothing here imports
``proxy``, ``rules`` or ``app``.
"""

from crypto.blind_index import IndexKey, blind_index
from crypto.cache import CacheStats, TenantKeyCache
from crypto.envelope import (
    ARMOR_PREFIX,
    DataKey,
    armor,
    dearmor,
    is_armored,
    is_envelope,
    open_envelope,
    peek_key_id,
    seal,
)
from crypto.errors import (
    BlindIndexError,
    CryptoError,
    EnvelopeMalformed,
    EnvelopeTampered,
    KeyDestroyed,
    KeyStoreError,
    KeyUnwrapFailed,
    MasterKeyError,
    MasterKeyUnavailable,
    TenantShredded,
    UnknownKey,
    WrongTenant,
)
from crypto.field import FieldCrypto
from crypto.master import (
    LocalMasterKey,
    MasterKey,
    MasterKeyProvider,
    MasterKeyRing,
    generate_master_key,
    load_master_key,
    load_master_keys,
    register_provider,
)
from crypto.store import KeyInfo, KeyStore, TenantKeyVersions

__all__ = [
    "ARMOR_PREFIX",
    "BlindIndexError",
    "CacheStats",
    "CryptoError",
    "DataKey",
    "EnvelopeMalformed",
    "EnvelopeTampered",
    "FieldCrypto",
    "IndexKey",
    "KeyDestroyed",
    "KeyInfo",
    "KeyStore",
    "KeyStoreError",
    "KeyUnwrapFailed",
    "LocalMasterKey",
    "MasterKey",
    "MasterKeyError",
    "MasterKeyProvider",
    "MasterKeyRing",
    "MasterKeyUnavailable",
    "TenantKeyCache",
    "TenantKeyVersions",
    "TenantShredded",
    "UnknownKey",
    "WrongTenant",
    "armor",
    "blind_index",
    "dearmor",
    "generate_master_key",
    "is_armored",
    "is_envelope",
    "load_master_key",
    "load_master_keys",
    "open_envelope",
    "peek_key_id",
    "register_provider",
    "seal",
]
