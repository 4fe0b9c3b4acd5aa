"""Key lifecycle operations behind ``pgseal keys``: rotate-master, rotate, shred, list.

Each operation has a dry run that reads the same rows and reports what it would
do, and returns a summary the CLI prints. None of them touches data rows.

* :func:`rotate_master` re-wraps every live key (data and index) under another
  master key in batches of ``batch_size``, one transaction per batch. Rows
  already under the target are never selected again, so an interrupted run is
  resumed by running it again. Before the first batch it checks that every
  master key the rows name is loaded. Afterwards the old master keys can be
  unloaded. Order of operations for a live system: make the new key the
  *first* ``master_key`` of every pgseal process (old key second) so new keys
  are wrapped under it, then run ``rotate-master --to NEW``, then drop the old.
* :func:`rotate` makes a new data-key version per tenant; older versions stay
  ``retired`` and keep opening. Index keys are not rotated (blind indexes stay
  valid). ``KeyStore.key_versions`` tells a re-encryption job which key ids are
  old for each tenant.
* :func:`shred` destroys every key of a tenant (wrapped bytes set to NULL,
  state ``destroyed``), announces it with NOTIFY so every process drops its
  cached copies, then VACUUMs ``pgseal.keys`` so the dead row versions holding
  the wrapped bytes are removed from the table.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from crypto.errors import KeyStoreError, MasterKeyError
from crypto.master import MasterKeyRing
from crypto.store import KeyInfo, KeyStore, RotationResult, ShredResult, TenantKeyVersions

__all__ = [
    "MasterRotationSummary",
    "RotateSummary",
    "ShredSummary",
    "list_keys",
    "rotate",
    "rotate_master",
    "shred",
]


@dataclass(frozen=True, slots=True)
class MasterRotationSummary:
    to_id: str
    dry_run: bool
    usage_before: dict[str, int]  # live keys per master key id
    usage_after: dict[str, int]
    rewrapped: int
    batches: int


@dataclass(frozen=True, slots=True)
class RotateSummary:
    dry_run: bool
    planned: tuple[TenantKeyVersions, ...]  # the state before
    done: tuple[RotationResult, ...]  # empty on a dry run


@dataclass(frozen=True, slots=True)
class ShredSummary:
    tenant: str
    dry_run: bool
    keys: tuple[KeyInfo, ...]  # the tenant's keys before the shred
    result: ShredResult | None  # None on a dry run
    vacuumed: bool


async def rotate_master(
    store: KeyStore,
    ring: MasterKeyRing,
    to_id: str,
    *,
    batch_size: int = 500,
    dry_run: bool = False,
    progress: Callable[[int], None] | None = None,
) -> MasterRotationSummary:
    """Re-wrap every live key under master key ``to_id`` (which must be loaded)."""
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    if to_id not in ring:
        raise MasterKeyError(
            f"master key {to_id} (--to) is not loaded; pass it with --master-key "
            f"(loaded: {', '.join(ring.ids)})"
        )
    before = await store.master_key_usage()
    missing = sorted(mid for mid in before if mid != to_id and mid not in ring)
    if missing:
        raise MasterKeyError(
            f"keys are wrapped under master key(s) {', '.join(missing)}, which are not "
            "loaded; pass every old master key with --master-key"
        )
    if dry_run:
        pending = sum(n for mid, n in before.items() if mid != to_id)
        return MasterRotationSummary(to_id, True, before, before, pending, 0)
    done = batches = 0
    while True:
        n = await store.rewrap_batch(ring, to_id, batch_size)
        if not n:
            break
        done += n
        batches += 1
        if progress is not None:
            progress(done)
    after = await store.master_key_usage()
    return MasterRotationSummary(to_id, False, before, after, done, batches)


async def rotate(
    store: KeyStore,
    ring: MasterKeyRing,
    *,
    tenant: str | None = None,
    all_tenants: bool = False,
    dry_run: bool = False,
) -> RotateSummary:
    """New data-key version for ``tenant`` (or every tenant with ``all_tenants``)."""
    if (tenant is None) == (not all_tenants):
        raise KeyStoreError("rotate needs exactly one of a tenant or all tenants")
    planned = tuple(await store.key_versions(tenant))
    if tenant is not None and not planned:
        # Let the store say precisely why (shredded, or no keys yet).
        if dry_run:
            raise KeyStoreError(f"tenant {tenant!r} has no active data key to rotate")
        return RotateSummary(False, (), (await store.rotate_tenant(tenant, ring),))
    if dry_run:
        return RotateSummary(True, planned, ())
    done = [await store.rotate_tenant(p.tenant, ring) for p in planned]
    return RotateSummary(False, planned, tuple(done))


async def shred(
    store: KeyStore, tenant: str, *, dry_run: bool = False, vacuum: bool = True
) -> ShredSummary:
    """Destroy every key of ``tenant``; its values can never be opened again."""
    keys = tuple(await store.list_keys(tenant))
    if not keys:
        raise KeyStoreError(f"tenant {tenant!r} has no keys; nothing to shred")
    if dry_run:
        return ShredSummary(tenant, True, keys, None, False)
    result = await store.shred_tenant(tenant)
    vacuumed = False
    if vacuum and result.destroyed_key_ids:
        await store.vacuum()
        vacuumed = True
    return ShredSummary(tenant, False, keys, result, vacuumed)


async def list_keys(store: KeyStore, tenant: str | None = None) -> list[KeyInfo]:
    """Every key row without key bytes (tenant, kind, version, state, master id, dates)."""
    return await store.list_keys(tenant)
