"""Master keys: env:/file: providers, ids, the ring, wrapping, wiping."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from crypto import master
from crypto.errors import KeyUnwrapFailed, MasterKeyError, MasterKeyUnavailable
from crypto.master import (
    LocalMasterKey,
    MasterKey,
    MasterKeyRing,
    generate_master_key,
    load_master_key,
    load_master_keys,
    master_key_id,
    register_provider,
    wrap_aad,
)
from tests.crypto.conftest import watch_secret, watch_text

VECTORS = json.loads((Path(__file__).parent / "envelope_vectors.json").read_text())


def fresh_text() -> str:
    text = generate_master_key()
    watch_secret(text)
    watch_secret(base64.b64decode(text))
    return text


def test_generate_master_key_is_32_random_bytes() -> None:
    a, b = fresh_text(), fresh_text()
    assert len(base64.b64decode(a)) == 32
    assert a != b


def test_id_is_hmac_of_fixed_label() -> None:
    material = os.urandom(32)
    watch_secret(material)
    expected = hmac.new(material, b"pgseal master key id v1", hashlib.sha256).digest()[:8].hex()
    key = LocalMasterKey(material)
    assert key.key_id == expected == master_key_id(material)
    assert len(key.key_id) == 16
    assert LocalMasterKey(os.urandom(32)).key_id != key.key_id


def test_env_provider(monkeypatch: pytest.MonkeyPatch) -> None:
    text = fresh_text()
    monkeypatch.setenv("PGSEAL_TEST_MK", text)
    key = load_master_key("env:PGSEAL_TEST_MK")
    assert key.key_id == master_key_id(base64.b64decode(text))
    assert key.source == "env:PGSEAL_TEST_MK"
    assert repr(key) == f"LocalMasterKey(key_id={key.key_id!r}, source='env:PGSEAL_TEST_MK')"
    watch_text(repr(key))
    # Surrounding whitespace (a trailing newline from a secret store) is fine.
    monkeypatch.setenv("PGSEAL_TEST_MK", text + "\n")
    assert load_master_key("env:PGSEAL_TEST_MK").key_id == key.key_id


def test_env_provider_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PGSEAL_TEST_MISSING", raising=False)
    with pytest.raises(MasterKeyError, match="not set"):
        load_master_key("env:PGSEAL_TEST_MISSING")
    short = base64.b64encode(b"sixteen byte key").decode()
    monkeypatch.setenv("PGSEAL_TEST_MK", short)
    with pytest.raises(MasterKeyError, match="not base64 of 32 bytes") as info:
        load_master_key("env:PGSEAL_TEST_MK")
    assert short not in str(info.value)
    with pytest.raises(MasterKeyError, match="names no variable"):
        load_master_key("env:")


def test_unknown_scheme_does_not_echo_the_spec() -> None:
    pasted = fresh_text()
    with pytest.raises(MasterKeyError, match="must start with one of") as info:
        load_master_key(pasted)
    assert pasted not in str(info.value)
    with pytest.raises(MasterKeyError):
        load_master_key("kms:arn:aws:kms:whatever")


def test_file_provider(tmp_path: Path) -> None:
    text = fresh_text()
    path = tmp_path / "master.key"
    path.write_text(text + "\n")
    path.chmod(0o600)
    key = load_master_key(f"file:{path}")
    assert key.key_id == master_key_id(base64.b64decode(text))
    assert key.source == f"file:{path}"
    raw = tmp_path / "raw.key"
    material = os.urandom(32)
    watch_secret(material)
    raw.write_bytes(material)
    raw.chmod(0o400)
    assert load_master_key(f"file:{raw}").key_id == master_key_id(material)


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o660, 0o644, 0o620])
def test_file_provider_refuses_group_or_other_access(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "master.key"
    path.write_text(fresh_text())
    path.chmod(mode)
    with pytest.raises(MasterKeyError, match="chmod 600") as info:
        load_master_key(f"file:{path}")
    assert f"{mode:04o}" in str(info.value)


def test_file_provider_errors(tmp_path: Path) -> None:
    with pytest.raises(MasterKeyError, match="cannot open"):
        load_master_key(f"file:{tmp_path / 'absent'}")
    with pytest.raises(MasterKeyError, match="not a regular file"):
        load_master_key(f"file:{tmp_path}")
    bad = tmp_path / "bad.key"
    bad.write_text("not a key at all")
    bad.chmod(0o600)
    with pytest.raises(MasterKeyError, match="not base64"):
        load_master_key(f"file:{bad}")


def test_ring_wraps_with_current_and_unwraps_with_named() -> None:
    old, new = LocalMasterKey(os.urandom(32), "old"), LocalMasterKey(os.urandom(32), "new")
    dek = os.urandom(32)
    watch_secret(dek)
    ring = MasterKeyRing([old])
    mid, wrapped = ring.wrap(dek, key_id=5, tenant="42", kind="data", version=1)
    assert mid == old.key_id
    assert len(wrapped) == 61
    both = MasterKeyRing([new, old])
    assert both.current is new
    assert len(both) == 2
    assert old.key_id in both
    assert both.unwrap(mid, wrapped, key_id=5, tenant="42", kind="data", version=1) == dek
    assert both.with_current(old.key_id).current is old
    with pytest.raises(MasterKeyUnavailable, match=old.key_id):
        MasterKeyRing([new]).unwrap(mid, wrapped, key_id=5, tenant="42", kind="data", version=1)
    assert old.key_id in repr(both)
    assert new.key_id in repr(both)


@pytest.mark.parametrize(
    "change",
    [
        {"key_id": 6},
        {"tenant": "43"},
        {"kind": "index"},
        {"version": 2},
    ],
)
def test_wrapped_key_is_bound_to_its_row(change: dict[str, object]) -> None:
    ring = MasterKeyRing([LocalMasterKey(os.urandom(32))])
    row: dict[str, object] = {"key_id": 5, "tenant": "42", "kind": "data", "version": 1}
    mid, wrapped = ring.wrap(os.urandom(32), **row)  # type: ignore[arg-type]
    with pytest.raises(KeyUnwrapFailed):
        ring.unwrap(mid, wrapped, **{**row, **change})  # type: ignore[arg-type]


def test_key_wrap_vector() -> None:
    v = VECTORS["key_wrap"][0]
    mk = bytes.fromhex(v["master_key_hex"])
    assert master_key_id(mk) == v["master_key_id"]
    aad = wrap_aad(key_id=v["key_id"], tenant=v["tenant"], kind=v["kind"], version=v["version"])
    assert aad.hex() == v["aad_hex"]
    wrapped = bytes.fromhex(v["wrapped_hex"])
    nonce = bytes.fromhex(v["nonce_hex"])
    assert wrapped == b"\x01" + nonce + AESGCM(mk).encrypt(
        nonce, bytes.fromhex(v["data_key_hex"]), aad
    )
    ring = MasterKeyRing([LocalMasterKey.from_text(v["master_key_base64"])])
    got = ring.unwrap(
        v["master_key_id"],
        wrapped,
        key_id=v["key_id"],
        tenant=v["tenant"],
        kind=v["kind"],
        version=v["version"],
    )
    assert got.hex() == v["data_key_hex"]


def test_wipe_zeroes_the_bytes_and_disables_the_key() -> None:
    key = LocalMasterKey(os.urandom(32))
    ring = MasterKeyRing([key])
    ring.wipe()
    assert key.wiped
    assert key._key == bytearray(32)
    with pytest.raises(MasterKeyError, match="wiped"):
        ring.wrap(os.urandom(32), key_id=1, tenant="t", kind="data", version=1)


def test_ring_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(MasterKeyError, match="no master key"):
        load_master_keys([])
    with pytest.raises(MasterKeyError):
        MasterKeyRing([])
    with pytest.raises(MasterKeyUnavailable):
        MasterKeyRing([LocalMasterKey(os.urandom(32))], current="0000000000000000")
    with pytest.raises(MasterKeyError, match="must be 32"):
        LocalMasterKey(b"short")
    a, b = fresh_text(), fresh_text()
    monkeypatch.setenv("PGSEAL_TEST_A", a)
    monkeypatch.setenv("PGSEAL_TEST_B", b)
    ring = load_master_keys(["env:PGSEAL_TEST_A", "env:PGSEAL_TEST_B"])
    assert ring.current.key_id == master_key_id(base64.b64decode(a))
    assert [k.source for k in ring] == ["env:PGSEAL_TEST_A", "env:PGSEAL_TEST_B"]


def test_custom_provider_for_kms(monkeypatch: pytest.MonkeyPatch) -> None:
    """A KMS-style key never exports bytes: it only wraps and unwraps."""

    class FakeKmsKey(MasterKey):
        def __init__(self) -> None:
            self.key_id = "feedfacefeedface"
            self.source = "fakekms:alias/pgseal"
            self._aead = AESGCM(AESGCM.generate_key(256))

        def wrap(self, material: bytes | bytearray, aad: bytes) -> bytes:
            return b"K" + self._aead.encrypt(bytes(12), bytes(material), aad)

        def unwrap(self, wrapped: bytes, aad: bytes) -> bytearray:
            return bytearray(self._aead.decrypt(bytes(12), wrapped[1:], aad))

    kms = FakeKmsKey()

    class Provider:
        def load(self, location: str) -> MasterKey:
            assert location == "alias/pgseal"
            return kms

    monkeypatch.setattr(master, "_PROVIDERS", dict(master._PROVIDERS))
    register_provider("fakekms", Provider())
    ring = load_master_keys(["fakekms:alias/pgseal"])
    dek = os.urandom(32)
    mid, wrapped = ring.wrap(dek, key_id=1, tenant="t", kind="data", version=1)
    assert mid == "feedfacefeedface"
    assert ring.unwrap(mid, wrapped, key_id=1, tenant="t", kind="data", version=1) == dek
