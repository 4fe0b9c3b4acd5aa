"""rules.config: every validation error names the right line; defaults; overrides."""

from __future__ import annotations

import dataclasses
import doctest
import textwrap
from pathlib import Path

import pytest

import rules.config
from rules.config import (
    DEFAULT_AUTH_QUERY,
    AuthConfig,
    Config,
    ConfigError,
    HostPort,
    KeyCacheConfig,
    Limits,
    TLSConfig,
    Upstream,
    load_config,
    mask_dsn,
    parse_config,
    parse_size,
)
from rules.model import LOGICAL_TYPES, ProtectedColumn

REPO_ROOT = Path(__file__).resolve().parents[2]

HEAD = "upstream: postgresql://127.0.0.1:5432/app\nmaster_key: env:PGSEAL_MASTER_KEY\n"
MARK = "# <-"


def expect_error(body: str, fragment: str, *, head: str = HEAD) -> ConfigError:
    """Parse ``head + body``; the error must be on the line marked ``# <-``."""
    text = head + textwrap.dedent(body).lstrip("\n")
    marked = [n for n, line in enumerate(text.splitlines(), 1) if MARK in line]
    assert len(marked) == 1, "mark exactly one line with '# <-'"
    with pytest.raises(ConfigError) as caught:
        parse_config(text)
    error = caught.value
    assert str(error).startswith(f"config.yaml:{marked[0]}: "), str(error)
    assert fragment in str(error), str(error)
    assert "\n" not in str(error)
    assert error.line == marked[0]
    return error


def table(columns: str, tenant: str = "tenant_column: business_id") -> str:
    return (
        f"tables:\n  customers:\n    {tenant}\n    columns:\n{textwrap.indent(columns, '      ')}"
    )


# -- defaults and the happy path ---------------------------------------------------


def test_minimal_file_takes_every_default() -> None:
    config = parse_config("upstream: postgresql://db.internal/app\n")
    assert config.upstream == Upstream("db.internal", 5432, "app", None)
    assert config.listen == HostPort("127.0.0.1", 6432)
    assert config.service_dsn is None
    assert config.master_keys == ()
    assert config.key_cache == KeyCacheConfig(ttl_seconds=300, max_keys=10_000)
    assert config.tls == TLSConfig(None, None, "disable", "prefer", None, False)
    assert config.auth == AuthConfig()
    assert config.auth.mode == "passthrough"
    assert config.auth.auth_query == DEFAULT_AUTH_QUERY
    assert config.limits == Limits(1000, 1 << 30, 0, 30, 10, 30)
    assert (config.log_format, config.log_level) == ("text", "info")
    assert config.plan_cache_size == 10_000
    assert config.require_tenant is False
    assert config.metrics_listen is None
    assert config.rules.tables == {}
    assert config.source is None


def test_everything_set(tmp_path: Path) -> None:
    for name in ("server.crt", "server.key", "ca.crt", "userlist.txt"):
        (tmp_path / name).write_text("x")
    text = textwrap.dedent(
        """\
        listen: 0.0.0.0:7432
        upstream: postgresql:///invorce?host=/run/postgresql&port=5433
        service_dsn: postgresql://pgseal:pw@127.0.0.1/invorce
        master_keys: [env:NEW_KEY, file:old.key]
        key_cache: {ttl_seconds: 1.5, max_keys: 3}
        tls: {cert: server.crt, key: server.key, client: require, upstream: verify-full,
              upstream_ca: ca.crt, direct: false}
        auth: {mode: terminate, auth_file: userlist.txt, upstream_user: app,
               upstream_password: pw2}
        limits:
          max_client_connections: 5
          max_message_size: 64MiB
          idle_timeout_seconds: 60
          startup_timeout_seconds: 5
          connect_timeout_seconds: 2.5
          shutdown_grace_seconds: 0
        log_format: json
        log_level: debug
        plan_cache_size: 50
        require_tenant: true
        metrics_listen: "[::1]:9187"
        tables:
          billing.invoices:
            tenant_column: business_id
            columns:
              amount: {type: numeric}
              code: {type: varchar(20), storage: text, migrating: true}
              ref: {type: character varying(12)}
              seq: {type: int8}
              on: {type: bool}
        """
    )
    config = parse_config(text, "x.yaml", base_dir=tmp_path)
    assert config.listen == HostPort("0.0.0.0", 7432)
    assert config.upstream == Upstream("localhost", 5433, "invorce", "/run/postgresql")
    assert config.master_keys == ("env:NEW_KEY", f"file:{tmp_path / 'old.key'}")
    assert config.key_cache == KeyCacheConfig(1.5, 3)
    assert config.tls == TLSConfig(
        tmp_path / "server.crt", tmp_path / "server.key", "require", "verify-full",
        tmp_path / "ca.crt", False,
    )  # fmt: skip
    assert config.auth.mode == "terminate"
    assert config.auth.auth_file == tmp_path / "userlist.txt"
    assert (config.auth.upstream_user, config.auth.upstream_password) == ("app", "pw2")
    assert config.limits == Limits(5, 64 << 20, 60, 5, 2.5, 0)
    assert (config.log_format, config.log_level, config.plan_cache_size) == ("json", "debug", 50)
    assert config.require_tenant is True
    assert config.rules.require_tenant is True
    assert config.metrics_listen == HostPort("::1", 9187)
    invoices = config.rules.table("billing.invoices")
    assert invoices is not None
    assert invoices.tenant_column == "business_id"
    assert invoices.columns["code"] == ProtectedColumn(
        "billing", "invoices", "code", "varchar", 20, storage="text", migrating=True
    )
    assert invoices.columns["ref"].logical_type == "varchar"
    assert invoices.columns["ref"].type_modifier == 12
    assert invoices.columns["seq"].logical_type == "bigint"
    # YAML 1.1 would read the key `on` as True; a column called "on" stays "on".
    assert invoices.columns["on"].logical_type == "boolean"


def test_tls_defaults_follow_the_certificate(tmp_path: Path) -> None:
    (tmp_path / "c.pem").write_text("x")
    (tmp_path / "k.pem").write_text("x")
    text = "upstream: postgresql://h/d\ntls: {cert: c.pem, key: k.pem}\n"
    tls = parse_config(text, base_dir=tmp_path).tls
    assert (tls.client, tls.direct, tls.upstream) == ("allow", True, "prefer")


def test_bare_table_name_means_public_and_rules_are_built() -> None:
    config = parse_config(
        HEAD
        + table(
            "company_name: {type: text}\n"
            "tax_id: {type: text, searchable: tax_id_bidx, normalize: [trim, casefold]}\n"
        )
    )
    customers = config.rules.table("customers")
    assert customers is not None
    assert customers.qualified == "public.customers"
    assert list(config.rules.tables) == ["public.customers"]
    tax_id = customers.columns["tax_id"]
    assert tax_id == ProtectedColumn(
        "public", "customers", "tax_id", "text", searchable="tax_id_bidx",
        normalize=("trim", "casefold"),
    )  # fmt: skip
    assert customers.columns["company_name"].storage == "bytea"


@pytest.mark.parametrize("logical_type", sorted(LOGICAL_TYPES))
def test_every_logical_type_is_accepted(logical_type: str) -> None:
    config = parse_config(HEAD + table(f"value: {{type: {logical_type}}}\n"))
    customers = config.rules.table("customers")
    assert customers is not None
    assert customers.columns["value"].logical_type == logical_type


def test_merge_keys_share_column_options() -> None:
    text = HEAD + textwrap.dedent(
        """\
        tables:
          customers:
            tenant_column: business_id
            columns:
              a: &plain {type: text, storage: text}
              b: {<<: *plain, storage: bytea}
        """
    )
    columns = parse_config(text).rules.tables["public.customers"].columns
    assert (columns["a"].storage, columns["b"].storage) == ("text", "bytea")
    assert columns["b"].logical_type == "text"


def test_values_are_frozen() -> None:
    config = parse_config("upstream: postgresql://h/d\n")
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.listen = HostPort("x", 1)  # type: ignore[misc]
    assert not hasattr(config, "__dict__")  # slots


def test_repository_config_yaml_loads() -> None:
    config = load_config(REPO_ROOT / "config.yaml")
    assert config.source == REPO_ROOT / "config.yaml"
    assert config.master_keys == ("env:PGSEAL_MASTER_KEY",)
    customers = config.rules.table("customers")
    assert customers is not None
    assert customers.tenant_column == "business_id"
    assert customers.columns["tax_id"].searchable == "tax_id_bidx"
    email = customers.columns["email"]
    assert email.searchable == "email_bidx"
    assert "casefold" in email.normalize
    # Every top-level key the loader knows is present in the reference file,
    # either set or commented out (documented).
    text = (REPO_ROOT / "config.yaml").read_text()
    for key in (
        "listen:", "upstream:", "service_dsn:", "master_key:", "master_keys:", "key_cache:",
        "ttl_seconds:", "max_keys:", "tls:", "cert:", "key:", "client:", "upstream_ca:",
        "direct:", "auth:", "mode:", "auth_file:", "auth_query:", "upstream_user:",
        "upstream_password:", "limits:", "max_client_connections:", "max_message_size:",
        "idle_timeout_seconds:", "startup_timeout_seconds:", "connect_timeout_seconds:",
        "shutdown_grace_seconds:", "log_format:", "log_level:", "plan_cache_size:",
        "require_tenant:", "metrics_listen:", "tables:", "tenant_column:", "columns:",
        "searchable", "normalize", "storage", "migrating",
    ):  # fmt: skip
        assert key in text, key


def test_docstring_examples() -> None:
    result = doctest.testmod(rules.config)
    assert result.attempted >= 5
    assert result.failed == 0


# -- validation errors, each on its exact line ---------------------------------------


def test_unknown_type_lists_the_valid_ones() -> None:
    error = expect_error(table("company: {type: strng}  # <-\n"), "unknown type 'strng'")
    for name in ("bigint", "text", "varchar(n)", "timestamptz", "jsonb"):
        assert name in str(error)


def test_unknown_type_suggests_a_close_one() -> None:
    expect_error(table("amount: {type: numerci}  # <-\n"), "did you mean 'numeric'?")


def test_missing_tenant_column() -> None:
    expect_error(
        """\
        tables:
          public.customers:  # <-
            columns:
              phone: {type: text}
        """,
        "table public.customers has no tenant_column",
    )


def test_tenant_column_cannot_be_protected() -> None:
    expect_error(
        table("phone: {type: text}\nbusiness_id: {type: bigint}  # <-\n"),
        "public.customers.business_id is the tenant column",
    )


def test_searchable_column_used_twice_in_one_table() -> None:
    expect_error(
        table(
            "tax_id: {type: text, searchable: bidx}\nemail: {type: text, searchable: bidx}  # <-\n"
        ),
        "blind-index column 'bidx' of public.customers.email is already the blind index "
        "of public.customers.tax_id",
    )


def test_searchable_column_equal_to_a_protected_column() -> None:
    expect_error(
        table("tax_id: {type: text, searchable: phone}  # <-\nphone: {type: text}\n"),
        "is itself an encrypted column",
    )


def test_searchable_column_equal_to_the_tenant_column() -> None:
    expect_error(
        table("tax_id: {type: text, searchable: business_id}  # <-\n"), "is the tenant column"
    )


def test_searchable_must_name_a_column() -> None:
    expect_error(table("tax_id: {type: text, searchable: true}  # <-\n"), "e.g. searchable:")


def test_unknown_normaliser() -> None:
    expect_error(
        table(
            "email:\n"
            "  type: text\n"
            "  searchable: email_bidx\n"
            "  normalize:\n"
            "    - trim\n"
            "    - lowercase  # <-\n"
        ),
        "unknown normaliser 'lowercase'",
    )


def test_normalize_without_searchable() -> None:
    expect_error(
        table("email: {type: text, normalize: [trim]}  # <-\n"),
        "normalize only applies to searchable columns",
    )


@pytest.mark.parametrize("length", ["0", "abc", "10485761", "-3"])
def test_bad_varchar_length(length: str) -> None:
    expect_error(table(f"code: {{type: 'varchar({length})'}}  # <-\n"), "bad varchar length")


def test_length_on_a_type_without_one() -> None:
    expect_error(table("amount: {type: 'numeric(10,2)'}  # <-\n"), "takes no length")


def test_storage_must_be_bytea_or_text() -> None:
    expect_error(
        table("phone: {type: text, storage: blob}  # <-\n"), "storage must be one of bytea, text"
    )


def test_duplicate_table_after_qualification() -> None:
    expect_error(
        """\
        tables:
          customers:
            tenant_column: business_id
            columns: {phone: {type: text}}
          public.customers:  # <-
            tenant_column: business_id
            columns: {email: {type: text}}
        """,
        "table public.customers is listed twice (as 'customers' on line 4",
    )


def test_key_written_twice_in_one_mapping() -> None:
    expect_error(
        table("phone: {type: text}\nphone: {type: text}  # <-\n"),
        "'phone' appears twice in table public.customers columns (first on line 7)",
    )


def test_unknown_column_option_suggests_the_right_one() -> None:
    expect_error(
        table("tax_id: {type: text, searchble: tax_bidx}  # <-\n"),
        "unknown key 'searchble' in column public.customers.tax_id (did you mean 'searchable'?)",
    )


def test_unknown_table_key_is_reported_before_the_missing_one() -> None:
    expect_error(
        """\
        tables:
          customers:
            tenant_colum: business_id  # <-
            columns: {phone: {type: text}}
        """,
        "did you mean 'tenant_column'?",
    )


def test_column_without_type() -> None:
    expect_error(table("phone: {storage: text}  # <-\n"), "has no type")


def test_column_must_be_a_mapping() -> None:
    expect_error(table("phone: text  # <-\n"), "must be a mapping such as {type: text}")


def test_table_without_columns() -> None:
    expect_error(
        "tables:\n  customers:  # <-\n    tenant_column: business_id\n", "lists no columns"
    )


def test_bad_column_name() -> None:
    expect_error(table("bad-name: {type: text}  # <-\n"), "is not a column or table name")


def test_bad_table_name() -> None:
    expect_error(
        "tables:\n  a.b.c:  # <-\n    tenant_column: t\n    columns: {x: {type: text}}\n",
        "is not a table name",
    )


def test_reserved_schema() -> None:
    expect_error(
        "tables:\n  pgseal.keys:  # <-\n    tenant_column: t\n    columns: {x: {type: text}}\n",
        "cannot be protected",
    )


def test_tables_need_a_master_key() -> None:
    expect_error(
        "tables:  # <-\n  customers:\n    tenant_column: t\n    columns: {x: {type: text}}\n",
        "no master_key is set",
        head="upstream: postgresql://h/d\n",
    )


def test_unknown_top_level_key() -> None:
    expect_error(
        "listne: 127.0.0.1:1  # <-\n",
        "unknown key 'listne' in the configuration (did you mean 'listen'?)",
    )


def test_unknown_key_without_a_close_match_lists_the_valid_ones() -> None:
    expect_error("limits: {zzz: 1}  # <-\n", "expected one of: max_client_connections")


def test_upstream_with_credentials_never_echoes_them() -> None:
    error = expect_error(
        "",
        "must not contain a user name or password",
        head="upstream: postgresql://app:hunter2@db/app  # <-\n",
    )
    assert "hunter2" not in str(error)


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        ("mysql://h/d", "must be a postgresql://"),
        ("postgresql:///d", "names no host"),
        ("postgresql://h:99999/d", "port"),
        ("postgresql://h/d?sslmode=require", "tls.upstream"),
        ("postgresql://h/d?host=relative", "unix-socket directory"),
        ("postgresql://a,b/d", "exactly one host"),
    ],
)
def test_bad_upstream(url: str, fragment: str) -> None:
    expect_error("", fragment, head=f"upstream: {url}  # <-\n")


def test_missing_upstream() -> None:
    expect_error("", "upstream is missing", head="listen: 127.0.0.1:1  # <-\n")


def test_empty_file() -> None:
    with pytest.raises(ConfigError, match=r"^config\.yaml:1: upstream is missing"):
        parse_config("")


def test_master_key_and_master_keys_together() -> None:
    expect_error("master_keys: [env:B]  # <-\n", "either master_key or master_keys")


@pytest.mark.parametrize(
    ("spec", "fragment"),
    [
        ("base64:AAAA", "env:VARIABLE"),
        ("env:1BAD", "not an environment variable name"),
        ("'file:'", "needs a path"),
    ],
)
def test_bad_master_key_spec(spec: str, fragment: str) -> None:
    expect_error("", fragment, head=f"upstream: postgresql://h/d\nmaster_key: {spec}  # <-\n")


def test_master_key_listed_twice() -> None:
    expect_error(
        "master_keys:\n  - env:A\n  - env:A  # <-\n",
        "listed twice",
        head="upstream: postgresql://h/d\n",
    )


def test_tls_cert_without_key(tmp_path: Path) -> None:
    expect_error("tls:\n  cert: server.crt  # <-\n", "tls.cert and tls.key must be given together")


def test_tls_client_require_without_cert() -> None:
    expect_error("tls:\n  client: require  # <-\n", "tls.client: require needs tls.cert")


def test_tls_direct_without_cert() -> None:
    expect_error("tls:\n  direct: true  # <-\n", "tls.direct: true needs")


def test_verify_full_needs_upstream_ca() -> None:
    expect_error("tls:\n  upstream: verify-full  # <-\n", "verify-full needs tls.upstream_ca")


def test_tls_file_must_exist(tmp_path: Path) -> None:
    text = "upstream: postgresql://h/d\ntls:\n  cert: nope.crt\n  key: nope.key\n"
    with pytest.raises(ConfigError) as caught:
        parse_config(text, base_dir=tmp_path)
    assert str(caught.value) == f"config.yaml:3: tls.cert: no such file: {tmp_path / 'nope.crt'}"


def test_terminate_needs_an_auth_source() -> None:
    expect_error("auth:\n  mode: terminate  # <-\n", "needs auth.auth_file, or service_dsn")


def test_terminate_with_service_dsn_uses_auth_query() -> None:
    config = parse_config(HEAD + "service_dsn: postgresql://pgseal@h/d\nauth: {mode: terminate}\n")
    assert config.auth.mode == "terminate"
    assert config.auth.auth_query == DEFAULT_AUTH_QUERY


def test_terminate_options_in_passthrough_mode() -> None:
    expect_error("auth:\n  upstream_user: app  # <-\n", "only applies to auth.mode: terminate")


def test_auth_query_needs_a_parameter() -> None:
    expect_error(
        "service_dsn: postgresql://p@h/d\nauth:\n  mode: terminate\n  auth_query: SELECT 1  # <-\n",
        "must take the user name as $1",
    )


@pytest.mark.parametrize(
    ("value", "fragment"),
    [("1TB", "units: B, KiB, MiB, GiB"), ("100", "from 4096 bytes"), ("3GiB", "2GiB - 1")],
)
def test_bad_max_message_size(value: str, fragment: str) -> None:
    expect_error(f"limits:\n  max_message_size: {value}  # <-\n", fragment)


@pytest.mark.parametrize(
    ("line", "fragment"),
    [
        ("limits: {max_client_connections: 0}", "must be >= 1"),
        ("limits: {startup_timeout_seconds: 0}", "must be > 0"),
        ("limits: {idle_timeout_seconds: -1}", "must be >= 0"),
        ("limits: {connect_timeout_seconds: soon}", "must be a number of seconds"),
        ("key_cache: {ttl_seconds: 0}", "key_cache.ttl_seconds must be > 0"),
        ("key_cache: {max_keys: 1.5}", "must be a whole number"),
        ("plan_cache_size: '10'", "plan_cache_size must be a whole number"),
        ("require_tenant: maybe", "require_tenant must be true or false"),
        ("log_level: warn", "log_level must be one of debug, info, warning, error"),
        ("log_format: xml", "log_format must be one of text, json"),
        ("listen: localhost", "expected HOST:PORT"),
        ('listen: ["::1"]', "quote IPv6"),
        ("metrics_listen: 'h:port'", "port must be a number"),
        ("service_dsn: host=db password=secret", "service_dsn must be a postgresql://"),
        ("tls: [a]", "tls must be a mapping"),
    ],
)
def test_bad_scalar_values(line: str, fragment: str) -> None:
    error = expect_error(f"{line}  # <-\n", fragment)
    assert "secret" not in str(error)


def test_yaml_syntax_error_names_its_line() -> None:
    expect_error("tables:\n  customers: {tenant_column: x\n  columns: x  # <-\n", "invalid YAML")


def test_yaml_tab_indentation() -> None:
    expect_error("limits:\n\tmax_client_connections: 5  # <-\n", "invalid YAML")


def test_forbidden_character_is_one_line() -> None:
    expect_error("listen: a\x01b  # <-\n", "invalid YAML: unacceptable character #x0001")


def test_two_documents() -> None:
    expect_error("---  # <-\nlisten: 127.0.0.1:1\n", "expected a single document")


def test_source_name_is_used() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config("listen: 1\n", "/etc/pgseal/pgseal.yaml")
    assert str(caught.value).startswith("/etc/pgseal/pgseal.yaml:1: ")


# -- files, overrides, secrets ---------------------------------------------------


def test_missing_file_is_one_clear_line(tmp_path: Path) -> None:
    path = tmp_path / "missing.yaml"
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(caught.value) == f"{path}: no such configuration file"


def test_directory_instead_of_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="is a directory"):
        load_config(tmp_path)


def test_relative_paths_follow_the_config_file(tmp_path: Path) -> None:
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "config.yaml").write_text(
        "upstream: postgresql://h/d\nmaster_key: file:keys/master.key\n"
    )
    config = load_config(tmp_path / "conf" / "config.yaml")
    assert config.master_keys == (f"file:{tmp_path / 'conf' / 'keys' / 'master.key'}",)


def test_load_config_errors_name_the_file(tmp_path: Path) -> None:
    path = tmp_path / "pgseal.yaml"
    path.write_text("upstream: postgresql://h/d\n\nlog_level: loud\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(caught.value).startswith(f"{path}:3: log_level must be one of")


def test_command_line_upstream_makes_the_file_one_optional(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("listen: 127.0.0.1:7000\n")
    config = load_config(path, upstream="postgresql://db:5999/x", listen="0.0.0.0:1")
    assert config.upstream == Upstream("db", 5999, "x")
    assert config.listen == HostPort("0.0.0.0", 1)


def test_with_overrides() -> None:
    base = parse_config("upstream: postgresql://h/d\nlog_level: debug\n")
    changed = base.with_overrides(
        listen="[::]:7000", upstream="postgresql://other:1/y", log_format="json"
    )
    assert changed.listen == HostPort("::", 7000)
    assert changed.upstream == Upstream("other", 1, "y")
    assert (changed.log_format, changed.log_level) == ("json", "debug")
    assert base.listen == HostPort("127.0.0.1", 6432)  # the original is untouched
    assert base.with_overrides() == base
    assert base.with_overrides(listen=HostPort("a", 2)).listen == HostPort("a", 2)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"listen": "nope"}, "--listen: expected HOST:PORT, got 'nope'"),
        ({"upstream": "http://x"}, "--upstream: must be a postgresql://HOST:PORT/DATABASE URL"),
        ({"log_level": "loud"}, "--log-level: must be one of debug, info, warning, error"),
    ],
)
def test_bad_overrides(kwargs: dict[str, str], message: str) -> None:
    base = Config.for_upstream("postgresql://h/d")
    with pytest.raises(ConfigError) as caught:
        base.with_overrides(**kwargs)
    assert str(caught.value) == message


def test_config_without_a_file() -> None:
    config = Config.for_upstream("postgresql://127.0.0.1:5433/app")
    assert config.upstream == Upstream("127.0.0.1", 5433, "app")
    assert config == dataclasses.replace(parse_config("upstream: postgresql://127.0.0.1:5433/app"))


def test_passwords_never_appear_in_reprs() -> None:
    config = parse_config(
        HEAD
        + "service_dsn: postgresql://pgseal:hunter2@db/app?password=hunter3\n"
        + "auth: {mode: terminate, upstream_user: app, upstream_password: hunter4}\n"
    )
    for text in (repr(config), str(config), repr(config.auth), str(config.auth)):
        assert "hunter" not in text
    assert "postgresql://pgseal:***@db/app?password=***" in repr(config)
    assert "upstream_password='***'" in repr(config.auth)
    assert "upstream_user='app'" in repr(config.auth)
    assert config.service_dsn == "postgresql://pgseal:hunter2@db/app?password=hunter3"
    assert config.auth.upstream_password == "hunter4"
    assert "upstream_password=None" in repr(AuthConfig())


# -- the small parsers ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected", "round_trip"),
    [
        ("postgresql://db", Upstream("db", 5432, None, None), "postgresql://db:5432/"),
        ("postgres://db:6000/app", Upstream("db", 6000, "app"), "postgresql://db:6000/app"),
        ("postgresql://[::1]:5/a", Upstream("::1", 5, "a"), "postgresql://[::1]:5/a"),
        (
            "postgresql://%2Fvar%2Frun%2Fpostgresql:5433/a",
            Upstream("localhost", 5433, "a", "/var/run/postgresql"),
            "postgresql://localhost:5433/a?host=/var/run/postgresql",
        ),
        (
            "postgresql:///a?host=/tmp/s",
            Upstream("localhost", 5432, "a", "/tmp/s"),
            "postgresql://localhost:5432/a?host=/tmp/s",
        ),
    ],
)
def test_upstream_parse(url: str, expected: Upstream, round_trip: str) -> None:
    parsed = Upstream.parse(url)
    assert parsed == expected
    assert str(parsed) == round_trip
    assert Upstream.parse(str(parsed)) == parsed


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:6432", HostPort("127.0.0.1", 6432)),
        ("[::1]:1", HostPort("::1", 1)),
        ("localhost:0", HostPort("localhost", 0)),
    ],
)
def test_host_port(text: str, expected: HostPort) -> None:
    assert HostPort.parse(text) == expected
    assert HostPort.parse(str(expected)) == expected


@pytest.mark.parametrize("text", ["", "host", ":1", "h:70000", "::1:5", "[::1", "h:x"])
def test_bad_host_port(text: str) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - each case has its own message
        HostPort.parse(text)


def test_parse_size() -> None:
    assert parse_size("1GiB") == 1 << 30
    assert parse_size("8 KiB") == 8192
    assert parse_size("512B") == 512
    assert parse_size("4096") == 4096
    with pytest.raises(ValueError, match="size like 64MiB"):
        parse_size("64MB")


def test_mask_dsn_forms() -> None:
    assert mask_dsn("postgresql://u@h/d") == "postgresql://u@h/d"
    assert mask_dsn("postgresql://u:p%40ss@h/d") == "postgresql://u:***@h/d"
    assert mask_dsn("host=h password=s3 user=u") == "host=h password=*** user=u"


def test_reload_keeps_the_command_line_values(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("listen: 127.0.0.1:7000\nlog_level: info\nplan_cache_size: 5\n")
    config = load_config(path, upstream="postgresql://db/app").with_overrides(log_level="debug")
    path.write_text("listen: 127.0.0.1:7001\nlog_level: warning\nplan_cache_size: 6\n")
    fresh = config.reload()
    assert fresh.plan_cache_size == 6  # from the edited file
    assert fresh.listen == HostPort("127.0.0.1", 7001)
    assert fresh.upstream == Upstream("db", 5432, "app")  # still the command line's
    assert fresh.log_level == "debug"
    assert fresh.reload() == fresh
    assert Config.for_upstream("postgresql://h/d").reload() == Config.for_upstream(
        "postgresql://h/d"
    )
    path.write_text("listen: nope\n")
    with pytest.raises(ConfigError, match=r":1: listen: expected HOST:PORT"):
        config.reload()


_TERMINATE = "service_dsn: postgresql://p@h/d\nauth:\n  mode: terminate\n  upstream_user: svc\n"


def test_upstream_password_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PGSEAL_TEST_UPSTREAM_PW", "from-env-9f2c")
    config = parse_config(
        HEAD + _TERMINATE + "  upstream_password: {env: PGSEAL_TEST_UPSTREAM_PW}\n"
    )
    assert config.auth.upstream_password == "from-env-9f2c"
    assert "from-env-9f2c" not in repr(config)
    monkeypatch.delenv("PGSEAL_TEST_UPSTREAM_PW")
    error = expect_error(
        _TERMINATE + "  upstream_password: {env: PGSEAL_TEST_UPSTREAM_PW}  # <-\n",
        "environment variable PGSEAL_TEST_UPSTREAM_PW is not set",
    )
    assert "from-env" not in str(error)


def test_upstream_password_from_a_private_file(tmp_path: Path) -> None:
    secret = tmp_path / "upstream.pw"
    secret.write_text("from-file-41ab\n")
    secret.chmod(0o600)
    text = HEAD + _TERMINATE + f"  upstream_password: {{file: {secret}}}\n"
    assert parse_config(text, base_dir=tmp_path).auth.upstream_password == "from-file-41ab"
    secret.chmod(0o640)
    with pytest.raises(ConfigError) as caught:
        parse_config(text, base_dir=tmp_path)
    assert "readable by group or others; chmod 600" in str(caught.value)
    assert "from-file" not in str(caught.value)


def test_upstream_password_takes_env_or_file_not_both() -> None:
    expect_error(
        _TERMINATE + "  upstream_password: {env: A, file: /b}  # <-\n",
        "takes one of env: VARIABLE or file: PATH",
    )
