"""proxy.cli: help for every command, one-line errors, exit codes, serve, demo.

Errors are checked through the real entry point (``python -m proxy`` in a
subprocess), so nothing between ``main`` and the shell can add a traceback.
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

import proxy.cli
from proxy.cli import build_parser, main
from rules.config import Config, HostPort, Upstream

REPO_ROOT = Path(__file__).resolve().parents[2]
SERVER_LANDED = importlib.util.find_spec("proxy.server") is not None
needs_server = pytest.mark.skipif(
    not SERVER_LANDED, reason="proxy/server.py has not landed yet: the demo needs it"
)


def child_env() -> dict[str, str]:
    """The environment for ``python -m proxy``: this checkout first on the path."""
    path = os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": path}


def run_pgseal(
    *args: str, cwd: Path | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "proxy", *args],
        cwd=cwd or REPO_ROOT,
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def commands(
    parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    """Every (command path, parser) in the tree, the top level included."""
    yield prefix, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from commands(sub, (*prefix, name))


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in root.handlers:
        if handler not in handlers:
            root.removeHandler(handler)
    root.setLevel(level)


# -- help ------------------------------------------------------------------------------


def test_top_level_help_through_the_entry_point() -> None:
    result = run_pgseal("--help")
    assert result.returncode == 0
    assert result.stderr == ""
    for word in ("serve", "demo", "--version", "--debug", "COMMAND"):
        assert word in result.stdout


def test_every_design_command_is_registered() -> None:
    paths = {path for path, _ in commands(build_parser())}
    expected = {("serve",), ("demo",), ("keys",), ("rules", "check"), ("migrate",)}
    assert expected | {("reencrypt",), ("audit",)} <= paths


@pytest.mark.parametrize("path", [path for path, _ in commands(build_parser())], ids=" ".join)
def test_every_command_help_mentions_every_option(
    path: tuple[str, ...], capsys: pytest.CaptureFixture[str]
) -> None:
    parser = dict(commands(build_parser()))[path]
    assert main([*path, "--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: pgseal")
    for action in parser._actions:
        for option in action.option_strings:
            assert option in out, f"{' '.join(path)} --help does not mention {option}"
        if action.option_strings and action.help != argparse.SUPPRESS:
            assert action.help, f"{option} has no help text"


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.startswith("pgseal ")


def test_no_command_prints_help_and_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "COMMAND" in capsys.readouterr().err


def test_unknown_option_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--nope"]) == 2
    assert "unrecognized arguments: --nope" in capsys.readouterr().err


# -- errors through the real entry point -----------------------------------------------


def test_broken_config_is_one_line_and_exit_2(tmp_path: Path) -> None:
    (tmp_path / "config.yaml").write_text(
        textwrap.dedent(
            """\
            upstream: postgresql://127.0.0.1:5432/app
            master_key: env:PGSEAL_MASTER_KEY
            tables:
              customers:
                tenant_column: business_id
                columns:
                  tax_id: {type: txt}
            """
        )
    )
    result = run_pgseal("serve", "--config", "config.yaml", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("config.yaml:7: unknown type 'txt' for public.customers.tax_id")
    assert "Traceback" not in result.stderr


def test_invalid_yaml_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "config.yaml").write_text("upstream: postgresql://h/d\nlimits: {a: 1\n")
    result = run_pgseal("serve", "--config", "config.yaml", cwd=tmp_path)
    assert result.returncode == 2
    assert len(result.stderr.splitlines()) == 1
    assert result.stderr.startswith("config.yaml:3: invalid YAML")


def test_missing_config_file_is_one_clear_line(tmp_path: Path) -> None:
    result = run_pgseal("serve", "--config", "nope.yaml", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr == "nope.yaml: no such configuration file\n"


def test_serve_needs_config_or_upstream() -> None:
    result = run_pgseal("serve")
    assert result.returncode == 2
    assert result.stderr == (
        "pgseal: error: serve needs --config PATH, or --upstream URL to run with default settings\n"
    )


def test_bad_listen_on_the_command_line() -> None:
    result = run_pgseal("serve", "--upstream", "postgresql://h/d", "--listen", "6432")
    assert result.returncode == 2
    assert result.stderr == "--listen: expected HOST:PORT, got '6432'\n"


def test_unexpected_error_is_one_line_exit_1(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def explode(args: argparse.Namespace) -> int:
        raise RuntimeError("the upstream\nwent away")

    monkeypatch.setattr(proxy.cli, "_serve", explode)
    assert main(["serve", "--upstream", "postgresql://h/d"]) == 1
    err = capsys.readouterr().err
    assert err == "pgseal: error: the upstream went away\n"

    assert main(["--debug", "serve", "--upstream", "postgresql://h/d"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" in err
    assert err.endswith("pgseal: error: the upstream went away\n")
    # --debug is accepted after the command name too.
    assert main(["serve", "--debug", "--upstream", "postgresql://h/d"]) == 1
    assert "Traceback" in capsys.readouterr().err


def test_os_error_names_the_file(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def missing(args: argparse.Namespace) -> int:
        raise FileNotFoundError(2, "No such file or directory", "/etc/pgseal/server.crt")

    monkeypatch.setattr(proxy.cli, "_serve", missing)
    assert main(["serve"]) == 1
    assert capsys.readouterr().err == (
        "pgseal: error: No such file or directory: /etc/pgseal/server.crt\n"
    )


# -- serve hands the merged configuration to the server ---------------------------------


def fake_server(monkeypatch: pytest.MonkeyPatch) -> list[Config]:
    seen: list[Config] = []

    def run(config: Config) -> int:
        seen.append(config)
        logging.getLogger("proxy.server").info("started", extra={"conn_id": 7})
        return 0

    module = ModuleType("proxy.server")
    module.run = run  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "proxy.server", module)
    return seen


@pytest.mark.usefixtures("restore_logging")
def test_serve_with_config_and_overrides(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    seen = fake_server(monkeypatch)
    path = tmp_path / "config.yaml"
    path.write_text("upstream: postgresql://db:5432/app\nlog_format: text\nlog_level: warning\n")
    status = main(
        ["serve", "--config", str(path), "--listen", "0.0.0.0:7777", "--log-format", "json",
         "--log-level", "info"]
    )  # fmt: skip
    assert status == 0
    [config] = seen
    assert config.listen == HostPort("0.0.0.0", 7777)
    assert config.upstream == Upstream("db", 5432, "app")
    assert (config.log_format, config.log_level) == ("json", "info")
    assert config.source == path
    err = capsys.readouterr().err
    assert '"msg":"started"' in err
    assert '"conn_id":7' in err


@pytest.mark.usefixtures("restore_logging")
def test_serve_without_a_file(monkeypatch: pytest.MonkeyPatch) -> None:
    seen = fake_server(monkeypatch)
    assert main(["serve", "--upstream", "postgresql://127.0.0.1:5999/x"]) == 0
    [config] = seen
    assert config.upstream == Upstream("127.0.0.1", 5999, "x")
    assert config.listen == HostPort("127.0.0.1", 6432)
    assert config.source is None


@pytest.mark.usefixtures("restore_logging")
def test_serve_upstream_overrides_the_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    seen = fake_server(monkeypatch)
    path = tmp_path / "config.yaml"
    path.write_text("listen: 127.0.0.1:7001\n")  # no upstream: the command line gives it
    assert main(["serve", "--config", str(path), "--upstream", "postgresql://other/db"]) == 0
    assert seen[0].upstream == Upstream("other", 5432, "db")
    assert seen[0].listen == HostPort("127.0.0.1", 7001)


# -- keys (proxy.cli_keys) ------------------------------------------------------------


def test_keys_commands_are_registered() -> None:
    paths = {path for path, _ in commands(build_parser())}
    assert {("keys",), ("keys", "generate-master"), ("keys", "list")} <= paths


def test_keys_help_through_the_entry_point() -> None:
    result = run_pgseal("keys", "--help")
    assert result.returncode == 0
    for name in ("generate-master", "init", "rotate-master", "rotate", "shred", "list"):
        assert name in result.stdout
