"""rotate-master, rotate, shred and list as library calls, on a real database."""

from __future__ import annotations

import pytest

from crypto.cache import TenantKeyCache
from crypto.envelope import peek_key_id
from crypto.errors import KeyDestroyed, KeyStoreError, MasterKeyError
from crypto.field import FieldCrypto
from crypto.master import MasterKeyRing
from crypto.rotation import list_keys, rotate, rotate_master, shred
from crypto.store import KeyStore
from tests.crypto.conftest import new_master

PHONE = "public.customers.phone"
TAX = "public.customers.tax_id"
TENANTS = ("acme", "globex", "initech")


async def populate(store: KeyStore, ring: MasterKeyRing) -> tuple[list[bytes], list[bytes]]:
    fc = FieldCrypto(TenantKeyCache(store, ring))
    envelopes = [await fc.seal_for(t, PHONE, f"phone of {t}".encode()) for t in TENANTS]
    indexes = [await fc.blind_index(t, TAX, b"DE123") for t in TENANTS]
    await fc.cache.close()
    return envelopes, indexes


async def test_rotate_master_then_everything_opens(store: KeyStore) -> None:
    old, new = new_master(), new_master()
    envelopes, indexes = await populate(store, MasterKeyRing([old]))
    both = MasterKeyRing([new, old])
    plan = await rotate_master(store, both, new.key_id, dry_run=True)
    assert plan.dry_run
    assert plan.rewrapped == 6
    assert await store.master_key_usage() == {old.key_id: 6}  # nothing changed
    seen: list[int] = []
    summary = await rotate_master(store, both, new.key_id, batch_size=4, progress=seen.append)
    assert (summary.rewrapped, summary.batches) == (6, 2)
    assert seen == [4, 6]
    assert summary.usage_before == {old.key_id: 6}
    assert summary.usage_after == {new.key_id: 6}
    # The old master key can be unloaded: a process with only the new one reads all.
    fresh = FieldCrypto(TenantKeyCache(store, MasterKeyRing([new])))
    for t, e, ix in zip(TENANTS, envelopes, indexes, strict=True):
        assert await fresh.open_for(PHONE, e, tenant=t) == f"phone of {t}".encode()
        assert await fresh.blind_index(t, TAX, b"DE123") == ix
    await fresh.cache.close()
    again = await rotate_master(store, both, new.key_id)
    assert again.rewrapped == 0


async def test_rotate_master_resumes_after_interruption(store: KeyStore) -> None:
    old, new = new_master(), new_master()
    envelopes, _ = await populate(store, MasterKeyRing([old]))
    both = MasterKeyRing([new, old])
    assert await store.rewrap_batch(both, new.key_id, 2) == 2  # then "crash"
    assert await store.master_key_usage() == {new.key_id: 2, old.key_id: 4}
    summary = await rotate_master(store, both, new.key_id, batch_size=100)
    assert summary.rewrapped == 4
    assert summary.usage_after == {new.key_id: 6}
    fresh = FieldCrypto(TenantKeyCache(store, MasterKeyRing([new])))
    for e in envelopes:
        await fresh.open_for(PHONE, e)
    await fresh.cache.close()


async def test_rotate_master_refuses_missing_keys_before_changing_anything(
    store: KeyStore,
) -> None:
    old, new = new_master(), new_master()
    await populate(store, MasterKeyRing([old]))
    with pytest.raises(MasterKeyError, match=old.key_id):
        await rotate_master(store, MasterKeyRing([new]), new.key_id)
    with pytest.raises(MasterKeyError, match="--to"):
        await rotate_master(store, MasterKeyRing([old]), new.key_id)
    assert await store.master_key_usage() == {old.key_id: 6}
    with pytest.raises(ValueError, match="batch_size"):
        await rotate_master(store, MasterKeyRing([old]), old.key_id, batch_size=0)


async def test_rotate_master_skips_shredded_keys(store: KeyStore) -> None:
    old, new = new_master(), new_master()
    await populate(store, MasterKeyRing([old]))
    await store.shred_tenant("acme")
    summary = await rotate_master(store, MasterKeyRing([new, old]), new.key_id)
    assert summary.rewrapped == 4
    assert summary.usage_after == {new.key_id: 4}


async def test_rotate_all_and_dry_run(store: KeyStore, ring: MasterKeyRing) -> None:
    envelopes, indexes = await populate(store, ring)
    plan = await rotate(store, ring, all_tenants=True, dry_run=True)
    assert [p.tenant for p in plan.planned] == sorted(TENANTS)
    assert plan.done == ()
    assert all(p.current_version == 1 for p in await store.key_versions())
    summary = await rotate(store, ring, all_tenants=True)
    assert sorted(r.tenant for r in summary.done) == sorted(TENANTS)
    assert all(r.new_version == 2 for r in summary.done)
    one = await rotate(store, ring, tenant="acme")
    assert [r.new_version for r in one.done] == [3]
    fc = FieldCrypto(TenantKeyCache(store, ring))
    for t, e, ix in zip(TENANTS, envelopes, indexes, strict=True):
        assert await fc.open_for(PHONE, e, tenant=t) == f"phone of {t}".encode()
        assert await fc.blind_index(t, TAX, b"DE123") == ix
        fresh = await fc.seal_for(t, PHONE, b"new")
        assert peek_key_id(fresh) != peek_key_id(e)
    await fc.cache.close()
    with pytest.raises(KeyStoreError, match="exactly one"):
        await rotate(store, ring)
    with pytest.raises(KeyStoreError, match="exactly one"):
        await rotate(store, ring, tenant="acme", all_tenants=True)
    with pytest.raises(KeyStoreError, match="no active data key"):
        await rotate(store, ring, tenant="nobody", dry_run=True)
    with pytest.raises(KeyStoreError, match="no keys yet"):
        await rotate(store, ring, tenant="nobody")


async def test_shred_and_dry_run(store: KeyStore, ring: MasterKeyRing) -> None:
    envelopes, _ = await populate(store, ring)
    plan = await shred(store, "acme", dry_run=True)
    assert plan.dry_run
    assert plan.result is None
    assert len(plan.keys) == 2
    assert len(await store.active_keys("acme")) == 2
    summary = await shred(store, "acme")
    assert summary.result is not None
    assert len(summary.result.destroyed_key_ids) == 2
    assert summary.vacuumed
    fc = FieldCrypto(TenantKeyCache(store, ring))
    with pytest.raises(KeyDestroyed):
        await fc.open_for(PHONE, envelopes[0])
    assert await fc.open_for(PHONE, envelopes[1]) == b"phone of globex"
    await fc.cache.close()
    with pytest.raises(KeyStoreError, match="nothing to shred"):
        await shred(store, "nobody")
    states = {(k.tenant, k.kind): k.state for k in await list_keys(store)}
    assert states[("acme", "data")] == "destroyed"
    assert states[("globex", "data")] == "active"
