"""``pgseal keys ...`` (proxy/cli_keys.py), run through a parser built with register()."""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import stat
from pathlib import Path

import pytest

from crypto.cache import TenantKeyCache
from crypto.field import FieldCrypto
from crypto.master import load_master_key
from crypto.store import KeyStore
from proxy.cli_keys import register
from tests.crypto.conftest import watch_secret, watch_text

PHONE = "public.customers.phone"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="pgseal")
    register(p.add_subparsers())
    return p


async def run(
    capsys: pytest.CaptureFixture[str], *argv: str, key_on_stdout: bool = False
) -> tuple[int, str, str]:
    """Parse and run one command in a worker thread (it runs its own event loop).

    Output goes to the leak watch, except a stdout whose job is to print a key.
    """
    args = parser().parse_args(["keys", *argv])
    assert args.func is args.handler
    code = await asyncio.to_thread(args.func, args)
    out, err = capsys.readouterr()
    watch_text(err if key_on_stdout else out + err)
    return code, out, err


@pytest.fixture
def master_env(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Two master keys in env vars; returns their ids (current first)."""
    ids = []
    for name in ("PGSEAL_CLI_MK1", "PGSEAL_CLI_MK2"):
        material = os.urandom(32)
        watch_secret(material)
        text = base64.b64encode(material).decode()
        watch_secret(text)
        monkeypatch.setenv(name, text)
        ids.append(load_master_key(f"env:{name}").key_id)
    return ids


@pytest.mark.parametrize(
    ("sub", "options"),
    [
        ("generate-master", ["--out"]),
        ("init", ["--dsn", "--config", "--dry-run"]),
        ("rotate-master", ["--to", "--dsn", "--config", "--master-key", "--dry-run"]),
        ("rotate", ["--tenant", "--all", "--dsn", "--master-key", "--dry-run"]),
        ("shred", ["--tenant", "--yes", "--dsn", "--master-key", "--dry-run"]),
        ("list", ["--tenant", "--dsn", "--config", "--master-key"]),
        ("destroy", ["--tenant", "--version", "--force", "--no-vacuum", "--config", "--dry-run"]),
    ],
)
def test_every_subcommand_has_help(
    sub: str, options: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        parser().parse_args(["keys", sub, "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    for option in options:
        assert option in out


def test_keys_alone_prints_help(capsys: pytest.CaptureFixture[str]) -> None:
    args = parser().parse_args(["keys"])
    assert args.func(args) == 2
    assert "generate-master" in capsys.readouterr().err


async def test_generate_master(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, out, err = await run(capsys, "generate-master", key_on_stdout=True)
    assert code == 0
    key = base64.b64decode(out.strip(), validate=True)
    watch_secret(key)
    assert len(key) == 32
    assert "master key id: " in err
    assert out.strip() not in err
    path = tmp_path / "mk"
    code, out, _ = await run(capsys, "generate-master", "--out", str(path))
    assert code == 0
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    watch_secret(path.read_text().strip())
    loaded = load_master_key(f"file:{path}")
    assert f"master key id: {loaded.key_id}" in out
    assert path.read_text().strip() not in out
    code, _, err = await run(capsys, "generate-master", "--out", str(path))
    assert code == 1
    assert "already exists" in err
    assert len(err.strip().splitlines()) == 1


async def test_init(capsys: pytest.CaptureFixture[str], fresh_db: str) -> None:
    code, out, _ = await run(capsys, "init", "--dsn", fresh_db, "--dry-run")
    assert code == 0
    assert "would be created" in out
    assert "CREATE TABLE" in out
    code, _, err = await run(capsys, "list", "--dsn", fresh_db)
    assert code == 1
    assert "pgseal keys init" in err
    code, out, _ = await run(capsys, "init", "--dsn", fresh_db)
    assert code == 0
    assert "created the key store" in out
    code, out, _ = await run(capsys, "init", "--dsn", fresh_db)
    assert code == 0
    assert "already present" in out


async def test_full_lifecycle(
    capsys: pytest.CaptureFixture[str], keys_db: str, master_env: list[str], store: KeyStore
) -> None:
    mk1, mk2 = master_env
    from crypto.master import load_master_keys

    ring = load_master_keys(["env:PGSEAL_CLI_MK1"])
    fc = FieldCrypto(TenantKeyCache(store, ring))
    sealed = {t: await fc.seal_for(t, PHONE, f"cli-secret-{t}".encode()) for t in ("t1", "t2")}
    await fc.cache.close()
    for t in sealed:
        watch_secret(f"cli-secret-{t}")
    db = ["--dsn", keys_db]
    one = ["--master-key", "env:PGSEAL_CLI_MK1"]

    code, out, _ = await run(capsys, "list", *db)
    assert code == 0
    lines = out.strip().splitlines()
    assert lines[0].split() == [
        "TENANT",
        "KIND",
        "VERSION",
        "STATE",
        "KEY",
        "ID",
        "MASTER",
        "KEY",
        "CREATED",
    ]
    assert len(lines) == 5
    assert all(mk1 in line for line in lines[1:])

    code, out, _ = await run(capsys, "rotate", "--all", "--dry-run", *db, *one)
    assert code == 0
    assert "2 tenant(s) would get a new data key" in out
    code, out, _ = await run(capsys, "rotate", "--tenant", "t1", *db, *one)
    assert code == 0
    assert "new data key version 2" in out
    code, out, _ = await run(capsys, "rotate", "--all", *db, *one)
    assert code == 0
    assert "rotated 2 tenant(s)" in out

    both = ["--master-key", "env:PGSEAL_CLI_MK2", "--master-key", "env:PGSEAL_CLI_MK1"]
    code, out, _ = await run(capsys, "rotate-master", "--to", mk2, "--dry-run", *db, *both)
    assert code == 0
    assert "7 keys would be re-wrapped" in out
    code, out, err = await run(
        capsys, "rotate-master", "--to", mk2, "--batch-size", "3", *db, *both
    )
    assert code == 0
    assert f"re-wrapped 7 keys under master key {mk2} in 3 batch(es)" in out
    assert "can be unloaded" in out
    assert "re-wrapped 3 keys so far" in err
    # Only the new master key is needed now.
    fc = FieldCrypto(TenantKeyCache(store, load_master_keys(["env:PGSEAL_CLI_MK2"])))
    for t, envelope in sealed.items():
        assert await fc.open_for(PHONE, envelope, tenant=t) == f"cli-secret-{t}".encode()
    await fc.cache.close()

    code, _, err = await run(capsys, "shred", "--tenant", "t1", *db)
    assert code == 1
    assert "add --yes" in err
    code, out, _ = await run(capsys, "shred", "--tenant", "t1", "--dry-run", *db)
    assert code == 0
    assert "4 key(s) of tenant 't1' would be destroyed" in out
    code, out, _ = await run(capsys, "shred", "--tenant", "t1", "--yes", *db)
    assert code == 0
    assert "destroyed 4 key(s)" in out
    assert "vacuumed" in out
    code, out, _ = await run(capsys, "list", "--tenant", "t1", *db)
    assert out.count("destroyed") == 4
    code, _, err = await run(capsys, "shred", "--tenant", "nobody", "--yes", *db)
    assert code == 1
    assert "nothing to shred" in err


async def test_config_file_supplies_dsn_and_master_key(
    capsys: pytest.CaptureFixture[str], keys_db: str, master_env: list[str], tmp_path: Path
) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(
        "upstream: postgresql://127.0.0.1:5432/app\n"
        f"service_dsn: {keys_db}\n"
        "master_key: env:PGSEAL_CLI_MK1\n"
    )
    code, out, _ = await run(capsys, "list", "--config", str(config))
    assert code == 0
    assert out.strip() == "no keys"
    code, out, _ = await run(capsys, "rotate", "--all", "--config", str(config))
    assert code == 0
    assert "rotated 0 tenant(s)" in out
    bad = tmp_path / "bad.yaml"
    bad.write_text("upstream: postgresql://127.0.0.1:5432/app\nservice_dsn: 12\n")
    code, _, err = await run(capsys, "list", "--config", str(bad))
    assert code == 2
    assert "bad.yaml" in err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["list"], "no database given"),
        (["rotate", "--all", "--dsn", "postgresql://x@127.0.0.1:1/db"], "no master key given"),
        (["list", "--dsn", "postgresql://nobody@127.0.0.1:1/nodb"], "cannot connect to"),
        (
            ["rotate", "--all", "--dsn", "postgresql://x@127.0.0.1:1/db", "--master-key", "x"],
            "must start with one of",
        ),
        (
            [
                "rotate",
                "--all",
                "--dsn",
                "postgresql://x@127.0.0.1:1/db",
                "--master-key",
                "env:PGSEAL_CLI_UNSET",
            ],
            "not set",
        ),
    ],
)
async def test_errors_are_one_line(
    capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    code, _out, err = await run(capsys, *argv)
    assert code == 1
    assert message in err
    assert len(err.strip().splitlines()) == 1
    assert "Traceback" not in err
    assert err.startswith("pgseal keys ")


async def test_rotate_master_with_unknown_target(
    capsys: pytest.CaptureFixture[str], keys_db: str, master_env: list[str]
) -> None:
    code, _, err = await run(
        capsys,
        "rotate-master",
        "--to",
        "0000000000000000",
        "--dsn",
        keys_db,
        "--master-key",
        "env:PGSEAL_CLI_MK1",
    )
    assert code == 1
    assert "is not loaded" in err
    assert master_env[0] in err


async def test_destroy_one_retired_version(
    capsys: pytest.CaptureFixture[str], keys_db: str, master_env: list[str]
) -> None:
    from crypto.errors import KeyDestroyed
    from crypto.master import load_master_keys

    db, one = ["--dsn", keys_db], ["--master-key", "env:PGSEAL_CLI_MK1"]
    fc = await FieldCrypto.connect(keys_db, load_master_keys(["env:PGSEAL_CLI_MK1"]))
    try:
        watch_secret("cli-destroy-old")
        old = await fc.seal_for("t9", PHONE, b"cli-destroy-old")
        assert await fc.open_for(PHONE, old, tenant="t9") == b"cli-destroy-old"  # now cached
        code, _, _ = await run(capsys, "rotate", "--tenant", "t9", *db, *one)
        assert code == 0

        for version, message in (
            ("2", "version 2 is the active data key of tenant 't9'; run 'pgseal keys rotate'"),
            ("7", "tenant 't9' has no data key version 7"),
        ):
            code, _, err = await run(
                capsys, "destroy", "--tenant", "t9", "--version", version, "--force", *db
            )
            assert code == 1
            assert message in err
            assert err.startswith("pgseal keys destroy: error:")
        # Nothing can be counted without --config: refused unless --force.
        code, _, err = await run(capsys, "destroy", "--tenant", "t9", "--version", "1", *db)
        assert code == 1
        assert "without --config PATH" in err
        code, out, _ = await run(
            capsys, "destroy", "--tenant", "t9", "--version", "1", "--force", "--dry-run", *db
        )
        assert (code, out.strip()) == (0, "dry run: version 1 of tenant 't9' would be destroyed")
        assert await fc.open_for(PHONE, old, tenant="t9") == b"cli-destroy-old"

        code, out, _ = await run(
            capsys, "destroy", "--tenant", "t9", "--version", "1", "--force", *db
        )
        assert code == 0
        assert "destroyed version 1 of tenant 't9'" in out
        assert "vacuumed" in out
        # The running process hears of it and drops the cached key.
        for _ in range(100):
            try:
                await fc.open_for(PHONE, old, tenant="t9")
            except KeyDestroyed:
                break
            await asyncio.sleep(0.05)
        else:
            pytest.fail("the destroyed key still opened its value")
        new = await fc.seal_for("t9", PHONE, b"cli-destroy-old")  # the active key still works
        assert await fc.open_for(PHONE, new, tenant="t9") == b"cli-destroy-old"
    finally:
        await fc.close()
    code, out, _ = await run(capsys, "list", "--tenant", "t9", *db)
    assert [line.split()[:4] for line in out.splitlines()[1:]] == [
        ["t9", "data", "1", "destroyed"],
        ["t9", "data", "2", "active"],
        ["t9", "index", "1", "active"],
    ]
    code, out, _ = await run(capsys, "destroy", "--tenant", "t9", "--version", "1", "--force", *db)
    assert (code, out.strip()) == (0, "version 1 of tenant 't9' was already destroyed")
