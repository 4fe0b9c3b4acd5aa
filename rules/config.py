"""config.yaml: loading, validation and the immutable values the proxy runs on.

The file is *composed* (not loaded) with PyYAML's safe loader, so every value
keeps the node it came from and every error names its line, in the form editors
and CI logs understand: ``config.yaml:12: unknown type 'strng' ...``. Where a
string is expected the scalar's raw text is used, which sidesteps YAML 1.1
surprises (a column called ``on`` stays ``on``, ``1:30`` stays a string); numbers
and booleans must be real YAML numbers and booleans. Each mapping is checked for
unknown keys (with a "did you mean") before its values, so a typo is reported as
a typo rather than as the missing key it was meant to be.

The result is a tree of frozen dataclasses; the column rules are ``rules.model``
objects. Secrets never pass through here: master keys are only *named*
(``env:VAR``, ``file:PATH``) and read later by crypto's providers, and the
service DSN's password and the upstream password are masked in every repr.
Relative paths are resolved against the directory of the config file.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, NoReturn, TypeVar
from urllib.parse import parse_qsl, quote, unquote, urlsplit

import yaml
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from rules.model import (
    LOGICAL_TYPES,
    NORMALIZERS,
    ProtectedColumn,
    ProtectedTable,
    Rules,
    qualify,
)

__all__ = [
    "AUTH_MODES",
    "CLIENT_TLS_MODES",
    "DEFAULT_AUTH_QUERY",
    "LOG_FORMATS",
    "LOG_LEVELS",
    "UPSTREAM_TLS_MODES",
    "AuthConfig",
    "Config",
    "ConfigError",
    "HostPort",
    "KeyCacheConfig",
    "Limits",
    "TLSConfig",
    "Upstream",
    "load_config",
    "mask_dsn",
    "parse_config",
    "parse_size",
]

CLIENT_TLS_MODES: Final = ("disable", "allow", "require")
UPSTREAM_TLS_MODES: Final = ("disable", "prefer", "require", "verify-full")
AUTH_MODES: Final = ("passthrough", "terminate")
LOG_FORMATS: Final = ("text", "json")
LOG_LEVELS: Final = ("debug", "info", "warning", "error")
DEFAULT_AUTH_QUERY: Final = "SELECT usename, passwd FROM pg_catalog.pg_shadow WHERE usename = $1"
MASTER_KEY_PROVIDERS: Final = ("env", "file")

#: Postgres's own limits: identifiers are at most NAMEDATALEN-1 bytes, varchar(n)
#: at most 10485760, and a protocol message length is a signed 32-bit integer.
_MAX_IDENTIFIER = 63
_MAX_VARCHAR = 10_485_760
_MAX_MESSAGE = 2**31 - 1
_MIN_MESSAGE = 4096
_MAX_OPENED_ROWS = 64 << 30  # a typo'd unit, not a plan: the process would swap

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_$]*")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_SIZE = re.compile(r"\s*(\d+)\s*(B|KiB|MiB|GiB)?\s*")
_SIZE_UNITS = {None: 1, "B": 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30}
_TYPE = re.compile(r"\s*([A-Za-z][A-Za-z0-9 ]*?)\s*(?:\(\s*([^()]*?)\s*\))?\s*")

#: Spellings Postgres accepts for the logical types, so a DBA can copy a type
#: from ``\d table``. Every value is a member of ``LOGICAL_TYPES``.
_TYPE_ALIASES = {
    "int": "integer",
    "int4": "integer",
    "int8": "bigint",
    "int2": "smallint",
    "bool": "boolean",
    "decimal": "numeric",
    "character varying": "varchar",
    "timestamp without time zone": "timestamp",
    "timestamp with time zone": "timestamptz",
}

#: Schemas that can never hold application tables to protect.
_RESERVED_SCHEMAS = frozenset({"pg_catalog", "information_schema", "pgseal"})

_NULL_TAG = "tag:yaml.org,2002:null"
_BOOL_TAG = "tag:yaml.org,2002:bool"
_INT_TAG = "tag:yaml.org,2002:int"
_FLOAT_TAG = "tag:yaml.org,2002:float"
_MERGE_TAG = "tag:yaml.org,2002:merge"


class ConfigError(Exception):
    """An invalid configuration; ``str()`` is ``<source>:<line>: <what is wrong>``.

    ``line`` is None when no line applies (an unreadable file, a command-line
    value); the text is then ``<source>: <what is wrong>``. Messages never quote
    a secret (a DSN, a password, a key).
    """

    def __init__(self, source: str, line: int | None, message: str) -> None:
        self.source = source
        self.line = line
        self.message = message
        super().__init__(str(self))

    def __str__(self) -> str:
        where = self.source if self.line is None else f"{self.source}:{self.line}"
        return f"{where}: {self.message}"


# -- value types -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HostPort:
    """A TCP address; ``str()`` gives ``host:port`` (``[v6]:port`` for IPv6)."""

    host: str
    port: int

    @classmethod
    def parse(cls, text: str, *, allow_port_zero: bool = True) -> HostPort:
        """``"127.0.0.1:6432"``, ``"[::1]:6432"``; port 0 means "any free port".

        >>> HostPort.parse("[::1]:6432")
        HostPort(host='::1', port=6432)
        """
        host, port = _split_host_port(text.strip())
        if not host or port is None:
            raise ValueError(f"expected HOST:PORT, got {text!r}")
        if port == 0 and not allow_port_zero:
            raise ValueError(f"port must be from 1 to 65535, got {text!r}")
        return cls(host, port)

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class Upstream:
    """Where the application's database is. Credentials always come from the client.

    With ``unix_socket_dir`` set, pgseal connects to the socket
    ``<unix_socket_dir>/.s.PGSQL.<port>`` and ``host`` is not used.
    ``database`` is the default for clients whose startup packet names none.
    """

    host: str
    port: int = 5432
    database: str | None = None
    unix_socket_dir: str | None = None

    @classmethod
    def parse(cls, url: str) -> Upstream:
        """Parse ``postgresql://host:port/dbname`` (or ``?host=/socket/dir``).

        Error messages never repeat the URL, which might hold a password.

        >>> Upstream.parse("postgresql://db.internal:5433/invorce")
        Upstream(host='db.internal', port=5433, database='invorce', unix_socket_dir=None)
        >>> Upstream.parse("postgresql:///invorce?host=/run/postgresql").unix_socket_dir
        '/run/postgresql'
        """
        parts = urlsplit(url.strip())
        if parts.scheme not in ("postgresql", "postgres"):
            raise ValueError("must be a postgresql://HOST:PORT/DATABASE URL")
        if "@" in parts.netloc:
            raise ValueError(
                "must not contain a user name or password: the client's own credentials "
                "are relayed (pgseal's own database access goes in service_dsn)"
            )
        if "," in parts.netloc:
            raise ValueError("must name exactly one host")
        socket_dir: str | None = None
        host, port = _split_host_port(unquote(parts.netloc)) if parts.netloc else ("", None)
        if host.startswith("/"):  # libpq's percent-encoded socket directory
            socket_dir, host = host, ""
        for key, value in parse_qsl(parts.query, keep_blank_values=True):
            if key == "host":
                if not value.startswith("/"):
                    raise ValueError(
                        "?host= must be a unix-socket directory (an absolute path); "
                        "put a TCP host before the port"
                    )
                socket_dir = value
            elif key == "port":
                if not value.isdigit():
                    raise ValueError("?port= must be a number")
                port = int(value)
            else:
                hint = (
                    " (TLS to the upstream is set with tls.upstream)"
                    if key.startswith("ssl")
                    else ""
                )
                raise ValueError(f"unsupported URL parameter {key!r}{hint}")
        if not host and socket_dir is None:
            raise ValueError(
                "names no host: write postgresql://HOST:PORT/DATABASE or "
                "postgresql:///DATABASE?host=/socket/dir"
            )
        port = 5432 if port is None else port
        if not 1 <= port <= 65535:
            raise ValueError("port must be from 1 to 65535")
        path = unquote(parts.path.lstrip("/"))
        if "/" in path:
            raise ValueError("the path must be just the database name")
        return cls(host or "localhost", port, path or None, socket_dir)

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        url = f"postgresql://{host}:{self.port}/{quote(self.database or '', safe='')}"
        if self.unix_socket_dir is not None:
            url += "?host=" + quote(self.unix_socket_dir, safe="/")
        return url


def _split_host_port(text: str) -> tuple[str, int | None]:
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise ValueError(f"unclosed '[' in {text!r}")
        host, rest = text[1:end], text[end + 1 :]
        if rest and not rest.startswith(":"):
            raise ValueError(f"expected HOST:PORT, got {text!r}")
        port_text = rest[1:] if rest else None
    elif text.count(":") == 1:
        host, port_text = text.split(":")
    elif ":" in text:
        raise ValueError(f"write IPv6 addresses in brackets: [{text}]:PORT")
    else:
        host, port_text = text, None
    if port_text is None:
        return host, None
    if not port_text.isdigit() or int(port_text) > 65535:
        raise ValueError(f"port must be a number from 0 to 65535, got {port_text!r}")
    return host, int(port_text)


def mask_dsn(dsn: str) -> str:
    """The DSN with any password replaced by ``***``, safe for logs and reprs.

    >>> mask_dsn("postgresql://pgseal:s3cret@db:5432/app?password=x&sslmode=require")
    'postgresql://pgseal:***@db:5432/app?password=***&sslmode=require'
    """
    parts = urlsplit(dsn)
    if parts.scheme and "@" in parts.netloc:
        userinfo, hostinfo = parts.netloc.rsplit("@", 1)
        if ":" in userinfo:
            userinfo = userinfo.split(":", 1)[0] + ":***"
        parts = parts._replace(netloc=f"{userinfo}@{hostinfo}")
    masked = parts.geturl() if parts.scheme else dsn
    # Query parameters (URL form) and key=value pairs (libpq keyword form).
    return re.sub(r"(?i)(password\s*=\s*)('[^']*'|[^&\s]+)", r"\1***", masked)


def parse_size(value: int | str) -> int:
    """Bytes from an integer or a string such as ``"64MiB"`` or ``"1 GiB"``.

    >>> parse_size("64MiB"), parse_size(4096)
    (67108864, 4096)
    """
    if isinstance(value, int):
        return value
    match = _SIZE.fullmatch(value)
    if match is None:
        raise ValueError(f"expected a number of bytes or a size like 64MiB, got {value!r}")
    return int(match.group(1)) * _SIZE_UNITS[match.group(2)]


def _size_text(size: int) -> str:
    """``2GiB - 1``, ``64GiB``: a bound as config.yaml would write it."""
    if size == _MAX_MESSAGE:
        return "2GiB - 1"
    for unit in ("GiB", "MiB", "KiB"):
        if size % _SIZE_UNITS[unit] == 0:
            return f"{size // _SIZE_UNITS[unit]}{unit}"
    return f"{size} bytes"


def _masked_repr(obj: Any, secrets: dict[str, Callable[[Any], str]]) -> str:
    items = []
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        shown = secrets[f.name](value) if f.name in secrets and value is not None else repr(value)
        items.append(f"{f.name}={shown}")
    return f"{type(obj).__name__}({', '.join(items)})"


@dataclass(frozen=True, slots=True)
class KeyCacheConfig:
    """Decrypted business keys kept in memory: for how long, and how many.

    ``opened_rows``: bytes of recently opened result rows (plaintext) remembered
    so that a row read again is not decrypted again; 0 keeps none. They are
    dropped with the keys (a shred, a rotation, a flush empties them all).
    """

    ttl_seconds: float = 300.0
    max_keys: int = 10_000
    opened_rows: int = 16 << 20


@dataclass(frozen=True, slots=True)
class TLSConfig:
    """TLS towards clients (``cert``/``key``, ``client`` mode) and towards Postgres.

    ``client``: ``disable`` answers SSLRequest with 'N'; ``allow`` accepts both;
    ``require`` refuses clients that do not use TLS. ``direct`` accepts
    Postgres 17's direct TLS (no SSLRequest, ALPN ``postgresql``).
    """

    cert: Path | None = None
    key: Path | None = None
    client: str = "disable"
    upstream: str = "prefer"
    upstream_ca: Path | None = None
    direct: bool = False


@dataclass(frozen=True, slots=True, repr=False)
class AuthConfig:
    """How clients authenticate: relayed to Postgres, or terminated by pgseal."""

    mode: str = "passthrough"
    auth_file: Path | None = None
    auth_query: str = DEFAULT_AUTH_QUERY
    upstream_user: str | None = None
    upstream_password: str | None = None

    def __repr__(self) -> str:
        return _masked_repr(self, {"upstream_password": lambda _: "'***'"})


@dataclass(frozen=True, slots=True)
class Limits:
    """Resource limits; a timeout of 0 means "no timeout"."""

    max_client_connections: int = 1000
    max_message_size: int = 1 << 30
    idle_timeout_seconds: float = 0.0
    startup_timeout_seconds: float = 30.0
    connect_timeout_seconds: float = 10.0
    shutdown_grace_seconds: float = 30.0


@dataclass(frozen=True, slots=True, repr=False)
class Config:
    """Everything pgseal runs on. Build it with ``load_config``/``parse_config``,
    ``Config.for_upstream`` (no file), and ``with_overrides`` (command line).

    ``source`` is the file it was loaded from (None when built without one) and
    ``overrides`` the command-line values laid over it, so that ``reload()`` (on
    SIGHUP) reads the file again and keeps what the command line said.
    """

    upstream: Upstream
    listen: HostPort = HostPort("127.0.0.1", 6432)
    service_dsn: str | None = None
    master_keys: tuple[str, ...] = ()
    key_cache: KeyCacheConfig = KeyCacheConfig()
    tls: TLSConfig = TLSConfig()
    auth: AuthConfig = AuthConfig()
    limits: Limits = Limits()
    log_format: str = "text"
    log_level: str = "info"
    plan_cache_size: int = 10_000
    metrics_listen: HostPort | None = None
    rules: Rules = field(default_factory=Rules)
    source: Path | None = None
    overrides: tuple[tuple[str, str], ...] = field(default=(), compare=False)

    @property
    def require_tenant(self) -> bool:
        return self.rules.require_tenant

    @classmethod
    def for_upstream(cls, url: str) -> Config:
        """A configuration with every default and this upstream (no file)."""
        return cls(upstream=_override_value("--upstream", url, Upstream.parse))

    def with_overrides(
        self,
        *,
        listen: str | HostPort | None = None,
        upstream: str | Upstream | None = None,
        log_format: str | None = None,
        log_level: str | None = None,
    ) -> Config:
        """A copy with command-line values in place of the file's (None = keep).

        A bad string raises ``ConfigError`` whose source is the option's name.
        """
        changes: dict[str, Any] = {}
        if listen is not None:
            changes["listen"] = (
                _override_value("--listen", listen, HostPort.parse)
                if isinstance(listen, str)
                else listen
            )
        if upstream is not None:
            changes["upstream"] = (
                _override_value("--upstream", upstream, Upstream.parse)
                if isinstance(upstream, str)
                else upstream
            )
        for name, value, allowed in (
            ("log_format", log_format, LOG_FORMATS),
            ("log_level", log_level, LOG_LEVELS),
        ):
            if value is not None:
                if value not in allowed:
                    raise ConfigError(
                        "--" + name.replace("_", "-"), None, f"must be one of {', '.join(allowed)}"
                    )
                changes[name] = value
        if not changes:
            return self
        given = dict(self.overrides)
        given.update((name, str(value)) for name, value in changes.items())
        return dataclasses.replace(self, **changes, overrides=tuple(given.items()))

    def reload(self) -> Config:
        """The file read again, with the same command-line values over it (SIGHUP).

        Without a file there is nothing to re-read and ``self`` is returned.
        Raises ``ConfigError`` like ``load_config``.
        """
        if self.source is None:
            return self
        given = dict(self.overrides)
        fresh = load_config(self.source, listen=given.get("listen"), upstream=given.get("upstream"))
        return fresh.with_overrides(
            log_format=given.get("log_format"), log_level=given.get("log_level")
        )

    def __repr__(self) -> str:
        return _masked_repr(self, {"service_dsn": lambda dsn: repr(mask_dsn(dsn))})


_T = TypeVar("_T")


def _override_value(option: str, text: str, parse: Callable[[str], _T]) -> _T:
    try:
        return parse(text)
    except ValueError as exc:
        raise ConfigError(option, None, str(exc)) from None


# -- loading -----------------------------------------------------------------


def load_config(
    path: str | Path, *, listen: str | None = None, upstream: str | None = None
) -> Config:
    """Read and validate a config file; ``listen``/``upstream`` override the file's.

    With ``upstream`` given the file need not name one. An unreadable file is a
    ``ConfigError`` without a line.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(str(path), None, "no such configuration file") from None
    except IsADirectoryError:
        raise ConfigError(str(path), None, "is a directory, not a configuration file") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(str(path), None, f"not UTF-8 text ({exc.reason})") from None
    except OSError as exc:
        raise ConfigError(str(path), None, f"cannot read: {exc.strerror}") from None
    config = parse_config(text, str(path), base_dir=path.parent, listen=listen, upstream=upstream)
    given = tuple((k, v) for k, v in (("listen", listen), ("upstream", upstream)) if v is not None)
    return dataclasses.replace(config, source=path, overrides=given)


def parse_config(
    text: str,
    source: str = "config.yaml",
    *,
    base_dir: str | Path | None = None,
    listen: str | None = None,
    upstream: str | None = None,
) -> Config:
    """Validate YAML text; ``source`` names it in errors, ``base_dir`` anchors
    relative paths (default: the current directory)."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else 1
        what = exc.problem or exc.context or "cannot parse"
        if exc.context and exc.context.startswith("expected"):  # "expected a single document"
            what = f"{exc.context}, {what}"
        raise ConfigError(source, line, f"invalid YAML: {what}") from None
    except yaml.YAMLError as exc:  # e.g. ReaderError: a character YAML forbids
        position = getattr(exc, "position", 0)
        line = text.count("\n", 0, position) + 1
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ConfigError(source, line, f"invalid YAML: {first}") from None
    reader = _Reader(source, Path(base_dir) if base_dir is not None else Path())
    return reader.config(root, listen=listen, upstream=upstream)


# -- the reader ----------------------------------------------------------------


def _line(node: Node) -> int:
    return int(node.start_mark.line) + 1


def _is_null(node: Node | None) -> bool:
    return node is None or (isinstance(node, ScalarNode) and node.tag == _NULL_TAG)


def _did_you_mean(word: str, options: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(options), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


class _Fields:
    """The keys of one YAML mapping, checked against the allowed ones, then taken."""

    def __init__(self, reader: _Reader, node: Node, where: str, allowed: Iterable[str]) -> None:
        self.node = node
        self.where = where
        self.entries: dict[str, tuple[ScalarNode, Node]] = {
            name: (key, value) for key, name, value in reader.items(node, where)
        }
        allowed = tuple(allowed)
        for name, (key, _) in self.entries.items():
            if name not in allowed:
                suggestion = _did_you_mean(name, allowed)
                if not suggestion:
                    suggestion = f"; expected one of: {', '.join(allowed)}"
                reader.fail(key, f"unknown key {name!r} in {where}{suggestion}")

    def get(self, name: str) -> Node | None:
        """The value node, or None when the key is absent or null."""
        entry = self.entries.get(name)
        return None if entry is None or _is_null(entry[1]) else entry[1]

    def key_line_of(self, name: str) -> Node:
        """The key node when present (for errors about it), else the mapping."""
        entry = self.entries.get(name)
        return entry[0] if entry is not None else self.node


class _Reader:
    def __init__(self, source: str, base_dir: Path) -> None:
        self.source = source
        self.base_dir = base_dir
        self.constructor = SafeConstructor()

    def fail(self, node: Node, message: str) -> NoReturn:
        raise ConfigError(self.source, _line(node), message)

    # -- shapes --------------------------------------------------------------
    def items(self, node: Node, where: str) -> Iterator[tuple[ScalarNode, str, Node]]:
        """(key node, key text, value node) of a mapping, last one winning after
        ``<<`` merges; a key written twice in the same mapping is an error."""
        if not isinstance(node, MappingNode):
            self.fail(node, f"{where} must be a mapping (key: value lines)")
        first_seen: dict[str, int] = {}
        for key, _ in node.value:
            if key.tag == _MERGE_TAG:
                continue
            if not isinstance(key, ScalarNode):
                self.fail(key, f"keys in {where} must be plain names")
            if key.value in first_seen:
                self.fail(
                    key,
                    f"{key.value!r} appears twice in {where} "
                    f"(first on line {first_seen[key.value]})",
                )
            first_seen[key.value] = _line(key)
        try:
            self.constructor.flatten_mapping(node)
        except yaml.MarkedYAMLError as exc:
            self.fail(node, f"invalid '<<' merge in {where}: {exc.problem}")
        merged: dict[str, tuple[ScalarNode, Node]] = {}
        for key, value in node.value:
            if not isinstance(key, ScalarNode):
                self.fail(key, f"keys in {where} must be plain names")
            merged[key.value] = (key, value)
        for name, (key, value) in merged.items():
            yield key, name, value

    def text(self, node: Node, what: str) -> str:
        if not isinstance(node, ScalarNode) or node.tag == _NULL_TAG:
            self.fail(node, f"{what} must be a string")
        value: str = node.value
        if not value.strip():
            self.fail(node, f"{what} must not be empty")
        return value

    def secret(self, node: Node, what: str) -> str:
        """A secret written inline, or kept out of the file: ``{env: VARIABLE}``
        or ``{file: PATH}`` (a file only its owner can read; one trailing newline
        is dropped). Errors name the variable or file, never the value."""
        if not isinstance(node, MappingNode):
            return self.text(node, what)
        fields = _Fields(self, node, what, ("env", "file"))
        env_node, file_node = fields.get("env"), fields.get("file")
        if (env_node is None) == (file_node is None):
            self.fail(node, f"{what} takes one of env: VARIABLE or file: PATH")
        if env_node is not None:
            name = self.text(env_node, f"{what}.env")
            value = os.environ.get(name)
            if not value:
                self.fail(env_node, f"{what}: environment variable {name} is not set")
            return value
        assert file_node is not None
        path = self.path(file_node, f"{what}.file")
        if path.stat().st_mode & 0o077:
            self.fail(
                file_node,
                f"{what}: {path} is readable by group or others; chmod 600 it",
            )
        value = path.read_text(encoding="utf-8")
        value = value[:-1] if value.endswith("\n") else value
        if not value:
            self.fail(file_node, f"{what}: {path} is empty")
        return value

    def integer(self, node: Node, what: str, minimum: int, maximum: int | None = None) -> int:
        if not isinstance(node, ScalarNode) or node.tag != _INT_TAG:
            self.fail(node, f"{what} must be a whole number")
        value = self.constructor.construct_object(node)
        assert isinstance(value, int)
        if value < minimum or (maximum is not None and value > maximum):
            bound = f"from {minimum} to {maximum}" if maximum is not None else f">= {minimum}"
            self.fail(node, f"{what} must be {bound}, got {value}")
        return value

    def seconds(self, node: Node, what: str, *, zero_ok: bool) -> float:
        if not isinstance(node, ScalarNode) or node.tag not in (_INT_TAG, _FLOAT_TAG):
            self.fail(node, f"{what} must be a number of seconds")
        value = float(self.constructor.construct_object(node))
        if value != value or value in (float("inf"), float("-inf")):
            self.fail(node, f"{what} must be a finite number of seconds")
        if value < 0 or (value == 0 and not zero_ok):
            self.fail(node, f"{what} must be {'>= 0' if zero_ok else '> 0'}, got {value:g}")
        return value

    def boolean(self, node: Node, what: str) -> bool:
        if not isinstance(node, ScalarNode) or node.tag != _BOOL_TAG:
            self.fail(node, f"{what} must be true or false")
        return bool(self.constructor.construct_object(node))

    def choice(self, node: Node, what: str, options: Iterable[str]) -> str:
        options = tuple(options)
        value = self.text(node, what)
        if value not in options:
            self.fail(
                node,
                f"{what} must be one of {', '.join(options)}, got {value!r}"
                f"{_did_you_mean(value, options)}",
            )
        return value

    def identifier(self, node: Node, what: str) -> str:
        value = self.text(node, what)
        if not _IDENTIFIER.fullmatch(value) or len(value) > _MAX_IDENTIFIER:
            self.fail(
                node,
                f"{what} {value!r} is not a column or table name "
                f"(letters, digits, _ and $, at most {_MAX_IDENTIFIER} characters)",
            )
        return value

    def path(self, node: Node, what: str) -> Path:
        path = Path(self.text(node, what)).expanduser()
        if not path.is_absolute():
            path = self.base_dir / path
        if not path.is_file():
            self.fail(node, f"{what}: no such file: {path}")
        return path

    def host_port(self, node: Node, what: str) -> HostPort:
        if isinstance(node, SequenceNode):
            self.fail(node, f'{what} must be HOST:PORT; quote IPv6 addresses: "[::1]:6432"')
        try:
            return HostPort.parse(self.text(node, what))
        except ValueError as exc:
            self.fail(node, f"{what}: {exc}")

    # -- sections ------------------------------------------------------------
    def config(self, root: Node | None, *, listen: str | None, upstream: str | None) -> Config:
        if root is None:  # an empty file
            root = MappingNode("tag:yaml.org,2002:map", [], start_mark=_FIRST_LINE)
        top = _Fields(
            self,
            root,
            "the configuration",
            (
                "listen", "upstream", "service_dsn", "master_key", "master_keys",
                "key_cache", "tls", "auth", "limits", "log_format", "log_level",
                "plan_cache_size", "require_tenant", "metrics_listen", "tables",
            ),
        )  # fmt: skip
        defaults = Config(upstream=Upstream("localhost"))

        upstream_node = top.get("upstream")
        upstream_value: Upstream | None = None
        if upstream_node is not None:
            try:
                upstream_value = Upstream.parse(self.text(upstream_node, "upstream"))
            except ValueError as exc:
                self.fail(upstream_node, f"upstream {exc}")
        if upstream is not None:
            upstream_value = _override_value("--upstream", upstream, Upstream.parse)
        if upstream_value is None:
            self.fail(
                top.key_line_of("upstream"),
                "upstream is missing: the postgresql://HOST:PORT/DATABASE URL of the "
                "application's database",
            )

        listen_node = top.get("listen")
        listen_value = (
            self.host_port(listen_node, "listen") if listen_node is not None else defaults.listen
        )
        if listen is not None:
            listen_value = _override_value("--listen", listen, HostPort.parse)

        service_dsn = self.service_dsn(top.get("service_dsn"))
        master_keys = self.master_keys(top)
        require_node = top.get("require_tenant")
        rules = Rules(
            tables=self.tables(top.get("tables")),
            require_tenant=self.boolean(require_node, "require_tenant")
            if require_node is not None
            else False,
        )
        if rules.tables and not master_keys:
            self.fail(
                top.key_line_of("tables"),
                "tables are configured but no master_key is set "
                "(master_key: env:VARIABLE or file:PATH)",
            )
        metrics_node = top.get("metrics_listen")
        plan_cache_node = top.get("plan_cache_size")
        return Config(
            upstream=upstream_value,
            listen=listen_value,
            service_dsn=service_dsn,
            master_keys=master_keys,
            key_cache=self.key_cache(top.get("key_cache")),
            tls=self.tls(top.get("tls")),
            auth=self.auth(top.get("auth"), service_dsn),
            limits=self.limits(top.get("limits")),
            log_format=self.optional_choice(top.get("log_format"), "log_format", LOG_FORMATS)
            or defaults.log_format,
            log_level=self.optional_choice(top.get("log_level"), "log_level", LOG_LEVELS)
            or defaults.log_level,
            plan_cache_size=self.integer(plan_cache_node, "plan_cache_size", 1)
            if plan_cache_node is not None
            else defaults.plan_cache_size,
            metrics_listen=self.host_port(metrics_node, "metrics_listen")
            if metrics_node is not None
            else None,
            rules=rules,
        )

    def optional_choice(self, node: Node | None, what: str, options: Iterable[str]) -> str | None:
        return None if node is None else self.choice(node, what, options)

    def service_dsn(self, node: Node | None) -> str | None:
        if node is None:
            return None
        dsn = self.text(node, "service_dsn")
        parts = urlsplit(dsn.strip())
        # The value may hold a password: describe the problem, never echo it.
        if parts.scheme not in ("postgresql", "postgres") or not (parts.netloc or parts.query):
            self.fail(node, "service_dsn must be a postgresql://USER@HOST:PORT/DATABASE URL")
        return dsn.strip()

    def master_keys(self, top: _Fields) -> tuple[str, ...]:
        single, several = top.get("master_key"), top.get("master_keys")
        if single is not None and several is not None:
            self.fail(
                top.key_line_of("master_keys"),
                "set either master_key or master_keys (a list, current key first), not both",
            )
        if single is not None:
            nodes = [single]
        elif several is not None:
            if not isinstance(several, SequenceNode) or not several.value:
                self.fail(several, "master_keys must be a list of key specs, current key first")
            nodes = list(several.value)
        else:
            return ()
        specs: list[str] = []
        for node in nodes:
            spec = self.key_spec(node)
            if spec in specs:
                self.fail(node, f"master key {spec!r} is listed twice")
            specs.append(spec)
        return tuple(specs)

    def key_spec(self, node: Node) -> str:
        spec = self.text(node, "master key").strip()
        provider, sep, rest = spec.partition(":")
        if not sep or provider not in MASTER_KEY_PROVIDERS:
            self.fail(
                node,
                "a master key is named, never written here: use env:VARIABLE "
                "(base64 in an environment variable) or file:PATH",
            )
        if provider == "env":
            if not _ENV_NAME.fullmatch(rest):
                self.fail(node, f"env:{rest} is not an environment variable name")
            return spec
        if not rest:
            self.fail(node, "file: needs a path, e.g. file:/etc/pgseal/master.key")
        path = Path(rest).expanduser()
        return f"file:{path if path.is_absolute() else self.base_dir / path}"

    def key_cache(self, node: Node | None) -> KeyCacheConfig:
        default = KeyCacheConfig()
        if node is None:
            return default
        fields = _Fields(self, node, "key_cache", ("ttl_seconds", "max_keys", "opened_rows"))
        ttl, size = fields.get("ttl_seconds"), fields.get("max_keys")
        opened = fields.get("opened_rows")
        return KeyCacheConfig(
            ttl_seconds=self.seconds(ttl, "key_cache.ttl_seconds", zero_ok=False)
            if ttl is not None
            else default.ttl_seconds,
            max_keys=self.integer(size, "key_cache.max_keys", 1)
            if size is not None
            else default.max_keys,
            opened_rows=self.size(opened, "key_cache.opened_rows", 0, _MAX_OPENED_ROWS)
            if opened is not None
            else default.opened_rows,
        )

    def tls(self, node: Node | None) -> TLSConfig:
        if node is None:
            return TLSConfig()
        fields = _Fields(
            self, node, "tls", ("cert", "key", "client", "upstream", "upstream_ca", "direct")
        )
        cert_node, key_node = fields.get("cert"), fields.get("key")
        if (cert_node is None) != (key_node is None):
            present = cert_node if cert_node is not None else key_node
            assert present is not None
            self.fail(present, "tls.cert and tls.key must be given together")
        cert = self.path(cert_node, "tls.cert") if cert_node is not None else None
        key = self.path(key_node, "tls.key") if key_node is not None else None

        client_node = fields.get("client")
        client = "allow" if cert is not None else "disable"
        if client_node is not None:
            client = self.choice(client_node, "tls.client", CLIENT_TLS_MODES)
            if client != "disable" and cert is None:
                self.fail(client_node, f"tls.client: {client} needs tls.cert and tls.key")

        upstream_node = fields.get("upstream")
        upstream = "prefer"
        if upstream_node is not None:
            upstream = self.choice(upstream_node, "tls.upstream", UPSTREAM_TLS_MODES)
        ca_node = fields.get("upstream_ca")
        upstream_ca = self.path(ca_node, "tls.upstream_ca") if ca_node is not None else None
        if upstream == "verify-full" and upstream_ca is None:
            assert upstream_node is not None  # verify-full is never the default
            self.fail(
                upstream_node,
                "tls.upstream: verify-full needs tls.upstream_ca (the CA that signed "
                "the server's certificate)",
            )

        direct_node = fields.get("direct")
        direct = cert is not None and client != "disable"
        if direct_node is not None:
            direct = self.boolean(direct_node, "tls.direct")
            if direct and (cert is None or client == "disable"):
                self.fail(
                    direct_node,
                    "tls.direct: true needs tls.cert and tls.key and tls.client allow or require",
                )
        return TLSConfig(cert, key, client, upstream, upstream_ca, direct)

    def auth(self, node: Node | None, service_dsn: str | None) -> AuthConfig:
        if node is None:
            return AuthConfig()
        fields = _Fields(
            self,
            node,
            "auth",
            ("mode", "auth_file", "auth_query", "upstream_user", "upstream_password"),
        )
        mode_node = fields.get("mode")
        mode = self.choice(mode_node, "auth.mode", AUTH_MODES) if mode_node else "passthrough"
        if mode == "passthrough":
            for name in ("auth_file", "auth_query", "upstream_user", "upstream_password"):
                if fields.get(name) is not None:
                    self.fail(
                        fields.key_line_of(name),
                        f"auth.{name} only applies to auth.mode: terminate "
                        "(in passthrough mode Postgres checks the client's password)",
                    )
            return AuthConfig()
        file_node, query_node = fields.get("auth_file"), fields.get("auth_query")
        auth_file = self.path(file_node, "auth.auth_file") if file_node is not None else None
        auth_query = DEFAULT_AUTH_QUERY
        if query_node is not None:
            auth_query = self.text(query_node, "auth.auth_query")
            if "$1" not in auth_query:
                self.fail(query_node, "auth.auth_query must take the user name as $1")
        if auth_file is None and service_dsn is None:
            self.fail(
                fields.key_line_of("mode"),
                "auth.mode: terminate needs auth.auth_file, or service_dsn for auth.auth_query",
            )
        user_node, password_node = fields.get("upstream_user"), fields.get("upstream_password")
        return AuthConfig(
            mode=mode,
            auth_file=auth_file,
            auth_query=auth_query,
            upstream_user=self.text(user_node, "auth.upstream_user") if user_node else None,
            upstream_password=self.secret(password_node, "auth.upstream_password")
            if password_node
            else None,
        )

    def limits(self, node: Node | None) -> Limits:
        default = Limits()
        if node is None:
            return default
        names = tuple(f.name for f in dataclasses.fields(Limits))
        fields = _Fields(self, node, "limits", names)
        values: dict[str, Any] = {}
        for name in names:
            value = fields.get(name)
            what = f"limits.{name}"
            if value is None:
                continue
            if name == "max_client_connections":
                values[name] = self.integer(value, what, 1)
            elif name == "max_message_size":
                values[name] = self.size(value, what)
            else:
                zero_ok = name in ("idle_timeout_seconds", "shutdown_grace_seconds")
                values[name] = self.seconds(value, what, zero_ok=zero_ok)
        return dataclasses.replace(default, **values)

    def size(
        self, node: Node, what: str, minimum: int = _MIN_MESSAGE, maximum: int = _MAX_MESSAGE
    ) -> int:
        if not isinstance(node, ScalarNode) or node.tag not in (_INT_TAG, "tag:yaml.org,2002:str"):
            self.fail(node, f"{what} must be a number of bytes or a size like 64MiB")
        raw = self.constructor.construct_object(node)
        try:
            value = parse_size(raw)
        except ValueError:
            self.fail(
                node,
                f"{what} must be a number of bytes or a size like 64MiB (units: B, KiB, MiB, GiB)",
            )
        if not minimum <= value <= maximum:
            self.fail(
                node,
                f"{what} must be from {minimum} bytes to {_size_text(maximum)}, got {value} bytes",
            )
        return value

    # -- tables --------------------------------------------------------------
    def tables(self, node: Node | None) -> dict[str, ProtectedTable]:
        tables: dict[str, ProtectedTable] = {}
        if node is None:
            return tables
        seen: dict[str, tuple[int, str]] = {}
        for key, name, value in self.items(node, "tables"):
            qualified = self.table_name(key, name)
            if qualified in seen:
                line, first = seen[qualified]
                self.fail(
                    key,
                    f"table {qualified} is listed twice (as {first!r} on line {line}; "
                    "a name without a schema means public)",
                )
            seen[qualified] = (_line(key), name)
            tables[qualified] = self.table(key, qualified, value)
        return tables

    def table_name(self, node: Node, name: str) -> str:
        parts = name.split(".")
        if len(parts) > 2 or not all(
            _IDENTIFIER.fullmatch(p) and len(p) <= _MAX_IDENTIFIER for p in parts
        ):
            self.fail(node, f"{name!r} is not a table name (write schema.table or table)")
        qualified = qualify(name)
        if qualified.split(".")[0] in _RESERVED_SCHEMAS:
            self.fail(
                node, f"{qualified}: tables in schema {qualified.split('.')[0]} cannot be protected"
            )
        return qualified

    def table(self, key: Node, qualified: str, node: Node) -> ProtectedTable:
        schema, table = qualified.split(".")
        where = f"table {qualified}"
        if _is_null(node):
            self.fail(key, f"{where} needs tenant_column and columns")
        fields = _Fields(self, node, where, ("tenant_column", "columns"))
        tenant_node = fields.get("tenant_column")
        if tenant_node is None:
            self.fail(
                key,
                f"{where} has no tenant_column (the column naming the business that owns "
                "each row, e.g. tenant_column: business_id)",
            )
        tenant = self.identifier(tenant_node, f"{where}: tenant_column")
        columns_node = fields.get("columns")
        if columns_node is None:
            self.fail(key, f"{where} lists no columns to encrypt")

        columns: dict[str, ProtectedColumn] = {}
        searchable_nodes: dict[str, Node] = {}
        for column_key, name, value in self.items(columns_node, f"{where} columns"):
            name = self.identifier(column_key, "column")
            if name == tenant:
                self.fail(
                    column_key,
                    f"{qualified}.{name} is the tenant column and cannot be encrypted "
                    "(pgseal reads it to choose the business's key)",
                )
            column, searchable_node = self.column(column_key, schema, table, name, value)
            columns[name] = column
            if searchable_node is not None:
                searchable_nodes[name] = searchable_node
        if not columns:
            self.fail(columns_node, f"{where} lists no columns to encrypt")

        index_owner: dict[str, str] = {}
        for name, searchable_node in searchable_nodes.items():
            index = columns[name].searchable
            assert index is not None
            label = f"blind-index column {index!r} of {qualified}.{name}"
            if index == tenant:
                self.fail(searchable_node, f"{label} is the tenant column")
            if index in columns:
                self.fail(searchable_node, f"{label} is itself an encrypted column")
            if index in index_owner:
                self.fail(
                    searchable_node,
                    f"{label} is already the blind index of {qualified}.{index_owner[index]}",
                )
            index_owner[index] = name
        return ProtectedTable(schema, table, tenant, columns)

    def column(
        self, key: Node, schema: str, table: str, name: str, node: Node
    ) -> tuple[ProtectedColumn, Node | None]:
        qualified = f"{schema}.{table}.{name}"
        if not isinstance(node, MappingNode):
            self.fail(
                key if _is_null(node) else node,
                f"{qualified} must be a mapping such as {{type: text}}",
            )
        fields = _Fields(
            self,
            node,
            f"column {qualified}",
            ("type", "searchable", "normalize", "storage", "migrating"),
        )
        type_node = fields.get("type")
        if type_node is None:
            self.fail(fields.key_line_of("type"), f"{qualified} has no type (e.g. type: text)")
        logical_type, modifier = self.logical_type(type_node, qualified)

        searchable_node = fields.get("searchable")
        searchable = None
        if searchable_node is not None:
            if isinstance(searchable_node, ScalarNode) and searchable_node.tag == _BOOL_TAG:
                self.fail(
                    searchable_node,
                    f"{qualified}: searchable names the column that holds the blind index, "
                    f"e.g. searchable: {name}_bidx",
                )
            searchable = self.identifier(searchable_node, f"{qualified}: searchable column")

        normalize: tuple[str, ...] = ()
        normalize_node = fields.get("normalize")
        if normalize_node is not None:
            if searchable is None:
                self.fail(
                    normalize_node,
                    f"{qualified}: normalize only applies to searchable columns "
                    "(it shapes the blind index); add searchable: COLUMN or remove it",
                )
            normalize = self.normalizers(normalize_node, qualified)

        storage_node, migrating_node = fields.get("storage"), fields.get("migrating")
        storage = (
            self.choice(storage_node, f"{qualified}: storage", ("bytea", "text"))
            if storage_node is not None
            else "bytea"
        )
        migrating = (
            self.boolean(migrating_node, f"{qualified}: migrating")
            if migrating_node is not None
            else False
        )
        column = ProtectedColumn(
            schema=schema,
            table=table,
            name=name,
            logical_type=logical_type,
            type_modifier=modifier,
            storage=storage,
            searchable=searchable,
            normalize=normalize,
            migrating=migrating,
        )
        return column, searchable_node

    def logical_type(self, node: Node, qualified: str) -> tuple[str, int | None]:
        raw = self.text(node, f"{qualified}: type")
        match = _TYPE.fullmatch(raw)
        valid = ", ".join(sorted(t if t != "varchar" else "varchar(n)" for t in LOGICAL_TYPES))
        if match is None:
            self.fail(node, f"unknown type {raw!r} for {qualified}; valid types: {valid}")
        base = " ".join(match.group(1).lower().split())
        base = _TYPE_ALIASES.get(base, base)
        if base not in LOGICAL_TYPES:
            self.fail(
                node,
                f"unknown type {raw!r} for {qualified}"
                f"{_did_you_mean(base, LOGICAL_TYPES)}; valid types: {valid}",
            )
        argument = match.group(2)
        if argument is None:
            return base, None
        if base != "varchar":
            self.fail(node, f"type {base} of {qualified} takes no length or precision")
        if not argument.isdigit() or not 1 <= int(argument) <= _MAX_VARCHAR:
            self.fail(
                node,
                f"bad varchar length {argument!r} for {qualified}: "
                f"must be a whole number from 1 to {_MAX_VARCHAR}",
            )
        return base, int(argument)

    def normalizers(self, node: Node, qualified: str) -> tuple[str, ...]:
        items = node.value if isinstance(node, SequenceNode) else [node]
        names: list[str] = []
        valid = ", ".join(sorted(NORMALIZERS))
        for item in items:
            value = self.text(item, f"{qualified}: normalize")
            if value not in NORMALIZERS:
                self.fail(
                    item,
                    f"unknown normaliser {value!r} for {qualified}"
                    f"{_did_you_mean(value, NORMALIZERS)}; valid: {valid}",
                )
            if value in names:
                self.fail(item, f"normaliser {value!r} of {qualified} is listed twice")
            names.append(value)
        return tuple(names)


_FIRST_LINE = yaml.Mark("config", 0, 0, 0, None, None)  # type: ignore[arg-type]
