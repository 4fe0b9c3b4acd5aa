"""Column encryption in the protocol stream: the session's hooks into rules and crypto.

The session (``proxy.session``) stays a byte relay; when column rules are
configured it calls the hooks of one :class:`SessionCrypto` per connection at
the few messages that carry SQL or protected values:

client -> server
    ``Parse``   the SQL is planned (``rules.plan_cache``): passed through, refused,
                or replaced by the rewritten SQL with its added parameters.
    ``Bind``    parameters of protected columns are sealed, blind indexes computed
                and appended; the client's parameter count never changes.
    ``Query``   refused, or literals of protected columns sealed into the text.
server -> client
    ``ParameterDescription``  added parameters hidden, logical types reported.
    ``RowDescription``        protected fields (table OID + attnum, from the
                              catalog map) get their logical type.
    ``DataRow``               protected values opened and encoded in the format
                              the client asked for.

Every hook is synchronous and uses only cached keys. When a key is not cached it
raises :class:`NeedKeys`; the session stops at that message, the server loads
the keys (one round trip) and the session goes on from the same message. What
cannot be done safely raises :class:`Refused` with the ErrorResponse to send;
nothing of that statement reaches Postgres.

Process-wide state (planner, catalog map, key cache) lives in :class:`Encryption`.
"""

from __future__ import annotations

import binascii
import dataclasses
import functools
import logging
import re
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from cachetools import TTLCache

from crypto.envelope import ARMOR_PREFIX, armor, dearmor, is_armored, is_envelope, peek_key_id
from crypto.errors import CryptoError
from proxy import codec
from proxy.metrics import Metrics
from rules.casts import convert_value
from rules.catalog import CatalogMap, load_catalog
from rules.config import KeyCacheConfig
from rules.model import ProtectedColumn, Rules
from rules.pgtypes import (
    LOGICAL_TYPE_OIDS,
    UnsupportedValueFormat,
    ValueCodec,
    ValueFormatError,
    codec_for,
    float_param_codec,
    is_utc_zone,
    set_server_version,
    timestamptz_offset_required,
)
from rules.plan_cache import Planner
from rules.plan_types import (
    BindAction,
    BlindIndex,
    BlindIndexArray,
    ClientParam,
    ClientParamArray,
    Literal,
    PassThrough,
    Plan,
    Refuse,
    Rewrite,
    Seal,
    SessionTenant,
    Slot,
    StatementInfo,
    TenantCommand,
    TenantFromParam,
    TenantLiteral,
    TenantSource,
    TenantValue,
    ValueCast,
)

if TYPE_CHECKING:
    import asyncpg

    from crypto.envelope import DataKey
    from crypto.field import FieldCrypto
    from rules.config import Config

__all__ = [
    "Encryption",
    "NeedKeys",
    "PortalState",
    "Refused",
    "RowColumns",
    "SessionCrypto",
]

log = logging.getLogger("pgseal.encryption")

_OID_TO_LOGICAL: Final = {oid: name for name, oid in LOGICAL_TYPE_OIDS.items()}
_ARRAY_OID: Final = {
    name: codec_for(name).array_oid for name in LOGICAL_TYPE_OIDS if name != "varchar"
} | {"varchar": 1015}
_TENANT_TYPES: Final = frozenset({"integer", "bigint", "smallint", "uuid", "text", "varchar"})
_TENANT_CODECS: Final = {name: codec_for(name) for name in _TENANT_TYPES}
_BYTEA_ARRAY_HEADER_OID: Final = 17
_TEXT_BINARY_TYPES: Final = frozenset({"text", "varchar"})  # binary format = text format
_U16: Final = struct.Struct("!H")
#: How a Bind value that may be an existing envelope starts: armoured text
#: (``pgseal1:``), the binary form (0x01), bytea hex text (``\\x01``). Only
#: those are checked (``_existing_envelope``); anything else is sealed.
_ENVELOPE_LEADS: Final = frozenset({b"p", b"\x01", b"\\"})
#: Memory for opened rows remembered per process (OpenedRows) unless config.yaml
#: says otherwise (``key_cache.opened_rows``): about 40k rows of 6 short fields.
#: The bound counts the stored and the opened row of each entry.
OPENED_ROWS_BYTES: Final = KeyCacheConfig().opened_rows
_OPENED_ROW_OVERHEAD: Final = 200  # dict slot, tuple, two bytes headers
_MAX_ROW_SHAPES: Final = 256
_I32: Final = struct.Struct("!i")
_U32: Final = struct.Struct("!I")
#: Int32 length prefixes of short values, made once: most envelopes fit.
_LENGTHS: Final = tuple(_I32.pack(n) for n in range(1024))
_ARMOR_PREFIX: Final = ARMOR_PREFIX.encode()


@functools.lru_cache(maxsize=64)
def _int16s(count: int) -> struct.Struct:
    """``count`` Int16s (format codes)."""
    return struct.Struct(f"!{count}h")


@functools.lru_cache(maxsize=64)
def _bind_formats(count: int) -> struct.Struct:
    """A Bind's parameter format section: ``count`` codes, then the parameter count."""
    return struct.Struct(f"!H{count}hH")


_MAX_FORMAT_SECTIONS: Final = 16  # per statement: a client sends one or two


def _format_section(
    section: bytes, seals: tuple[ParamSeal | None, ...]
) -> tuple[tuple[int, ...], bytes] | None:
    """A Bind's parameter format section (its count, the codes, the parameter
    count): the format of each parameter, and the section once every sealed
    parameter is binary; None when ``decode_bind`` would reject it or the
    parameter count is not ``len(seals)``."""
    count = len(seals)
    if len(section) < 4:
        return None
    nformats = section[0] << 8 | section[1]
    if len(section) != 4 + 2 * nformats or (section[-2] << 8 | section[-1]) != count:
        return None
    formats: tuple[int, ...]
    if nformats == count:
        formats = _int16s(count).unpack_from(section, 2)
    elif nformats == 1:
        formats = (section[2] << 8 | section[3],) * count
    elif nformats == 0:
        formats = (0,) * count
    else:
        return None
    if any(f != 0 and f != 1 for f in formats):
        return None
    sealed = [1 if ps is not None else f for ps, f in zip(seals, formats, strict=True)]
    return formats, _bind_formats(count).pack(count, *sealed, count)


# How long a key id the key store does not hold is remembered as missing. A
# message that names one is retried after a key load; without this memory the
# retry would ask for the same key again, forever. Short, because another pgseal
# process may create a tenant's first key at any moment.
_MISSING_KEY_TTL_S: Final = 10.0
_MISSING_KEY_MAX: Final = 4096
_MAX_KEY_ID: Final = 1 << 63  # exclusive: pgseal.keys.key_id is a positive bigint


class Refused(Exception):
    """The message cannot be relayed safely; ``error`` is the ErrorResponse to send."""

    def __init__(self, error: bytes) -> None:
        super().__init__("refused")
        self.error = error


class NeedKeys(Exception):
    """Keys that are not in the cache; load them and retry the same message."""

    def __init__(
        self, tenants: frozenset[str] = frozenset(), key_ids: frozenset[int] = frozenset()
    ) -> None:
        super().__init__("keys needed")
        self.tenants = tenants
        self.key_ids = key_ids


def refusal(message: str, hint: str | None = None, sqlstate: str = "0A000") -> Refused:
    return Refused(codec.encode_error(sqlstate, message, hint=hint))


def crypto_refusal(exc: CryptoError) -> Refused:
    return Refused(codec.encode_error(exc.sqlstate, f"pgseal: {exc}"))


def column_codec(column: ProtectedColumn) -> ValueCodec:
    if column.logical_type == "varchar" and column.type_modifier:
        return codec_for(f"varchar({column.type_modifier})")
    return codec_for(column.logical_type)


# --- result shapes ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RowColumns:
    """The protected fields of a result: (field index, column, codec)."""

    count: int
    protected: tuple[tuple[int, ProtectedColumn, ValueCodec], ...]


NO_PROTECTED: Final = RowColumns(0, ())


@dataclass(frozen=True, slots=True)
class FieldPlan:
    """How one protected field of a result is opened on the fast path."""

    qualified: str  # the envelope's AAD
    hex: bool  # bytea in text format (``\\x01...``) rather than binary
    #: None: the plaintext is already the client's encoding (canonical text is
    #: both formats of text and varchar, and the text format of every type).
    out: ValueCodec | None
    fmt: int


@dataclass(frozen=True, slots=True)
class RowPlan:
    """Per portal: which fields of each DataRow to open and how.

    Made once from the RowDescription's shape and the Bind's result formats, so
    a row costs one :meth:`FieldCrypto.try_open_fields` (binary), or one parse
    and one :meth:`FieldCrypto.try_open_row` (hex text), and one join.
    ``fields`` is None when some protected column is not a bytea envelope in
    the plain case (armoured text storage, odd format codes): every row then
    takes the per-field path.
    """

    columns: RowColumns
    fields: tuple[FieldPlan | None, ...] | None
    #: Rows of this shape opened lately (``OpenedRows``), None: not remembered.
    opened: dict[bytes, OpenedRow] | None = dataclasses.field(default=None, compare=False)
    #: Every protected field is in binary format: its envelope lies in the row
    #: as is and is opened in place (:meth:`FieldCrypto.try_open_fields`).
    binary: bool = False
    #: Per field of the row, for :meth:`FieldCrypto.try_open_fields`: (the AAD
    #: column, its output encoder or None) of a protected one, None for others.
    openers: tuple[tuple[str, Callable[[bytes], bytes] | None] | None, ...] = ()


#: An opened DataRow: the message for the client, the one key that opened it,
#: how many values it opened.
OpenedRow = tuple[bytes, "DataKey", int]


class OpenedRows:
    """DataRows opened lately, by their stored bytes: a row read again is one dict hit.

    Apps re-read the same rows (a customer page, a lookup by id); opening them
    again costs a parse and one AES-GCM per field, most of the proxy's CPU on
    reads. The same envelope bytes under the same AADs and formats always open
    to the same plaintext, so a table per field plan maps stored row -> opened
    row. A hit re-checks what opening would: the key is still the cached key
    for its id (expiry drops it) and belongs to the session's tenant. Any
    invalidation of the key cache (a shred, a rotation, a flush) empties every
    table, so plaintext of a shredded business does not stay behind. Bounded in
    bytes and cleared when full: a working set above the bound gains nothing from
    an LRU order, and clearing is O(1) per entry once. The plaintext kept here is
    no more exposed than the data keys beside it, which open every value.
    """

    __slots__ = ("by_fields", "generation", "max_bytes", "size")

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.by_fields: dict[tuple[FieldPlan | None, ...], dict[bytes, OpenedRow]] = {}
        self.size = 0
        self.generation = -1

    def table(self, fields: tuple[FieldPlan | None, ...]) -> dict[bytes, OpenedRow] | None:
        if self.max_bytes <= 0:
            return None
        table = self.by_fields.get(fields)
        if table is None and len(self.by_fields) < _MAX_ROW_SHAPES:
            table = self.by_fields[fields] = {}
        return table

    def add(self, table: dict[bytes, OpenedRow], body: bytes, row: OpenedRow) -> None:
        self.size += len(body) + len(row[0]) + _OPENED_ROW_OVERHEAD
        if self.size > self.max_bytes:
            self.clear()
            self.size = len(body) + len(row[0]) + _OPENED_ROW_OVERHEAD
        table[body] = row

    def clear(self) -> None:
        # In place: the row plans of running portals hold these tables.
        for table in self.by_fields.values():
            table.clear()
        self.size = 0

    def sync(self, generation: int) -> None:
        """Empty everything when the key cache was invalidated since the last call."""
        if generation != self.generation:
            self.clear()
            self.generation = generation


def _row_plan(
    columns: RowColumns, formats: tuple[int, ...], opened: OpenedRows | None = None
) -> RowPlan:
    if len(formats) not in (0, 1, columns.count):
        return RowPlan(columns, None)
    fields: list[FieldPlan | None] = [None] * columns.count
    for index, column, value_codec in columns.protected:
        fmt = (formats[0] if len(formats) == 1 else formats[index]) if formats else 0
        if column.storage != "bytea" or fmt not in (0, 1) or index >= columns.count:
            return RowPlan(columns, None)
        text_out = fmt == 0 or value_codec.logical_type in _TEXT_BINARY_TYPES
        out = None if text_out else value_codec
        fields[index] = FieldPlan(column.qualified, fmt == 0, out, fmt)
    shape = tuple(fields)
    return _shaped(columns, shape, None if opened is None else opened.table(shape))


def _shaped(
    columns: RowColumns,
    shape: tuple[FieldPlan | None, ...],
    opened: dict[bytes, OpenedRow] | None,
) -> RowPlan:
    return RowPlan(
        columns,
        shape,
        opened,
        binary=not any(f.hex for f in shape if f is not None),
        openers=tuple(
            None if f is None else (f.qualified, None if f.out is None else _output(f.out))
            for f in shape
        ),
    )


def _output(value_codec: ValueCodec) -> Callable[[bytes], bytes]:
    """Canonical text -> the binary format (raises ValueFormatError, a ValueError)."""
    return functools.partial(value_codec.from_canonical, fmt=1)


@dataclass(slots=True)
class PortalState:
    """What the session knows about one portal's (or one Query's) result rows."""

    portal: str = ""
    statement: str = ""
    columns: RowColumns | None = None  # None: not described yet
    result_formats: tuple[int, ...] = ()
    injected_describe: bool = False
    #: How its DataRows are opened, made from ``columns`` on the first row.
    row_plan: RowPlan | None = None
    #: The COPY on a protected table it runs (a CopyIn or CopyOut), made at Bind.
    copy: object | None = None

    def format_of(self, index: int) -> int:
        formats = self.result_formats
        if not formats:
            return 0
        return formats[0] if len(formats) == 1 else formats[index]


@dataclass(slots=True)
class StatementCrypto:
    """Per prepared statement: its plan and what Describe told about it."""

    plan: Plan
    client_types: tuple[int, ...] = ()
    server_types: tuple[int, ...] = ()
    columns: RowColumns | None = None
    #: A Rewrite's Bind work, worked out on its first Bind (``_bind_sealer``).
    sealer: BindSealer | None = None
    #: A COPY on a protected table: its statements and SQL, for ``_copy`` at each Bind.
    copy: tuple[tuple[StatementInfo, ...], str] | None = None


@dataclass(frozen=True, slots=True)
class ParamSeal:
    """One client parameter a Bind seals, with what sealing it needs."""

    index: int  # 0-based
    column: ProtectedColumn
    qualified: str  # the column's AAD name
    target: ValueCodec  # the column's codec
    #: Binary values the client declared as another logical type are read as
    #: that type first (``_canonical_param``); None: read as ``target``.
    via: ValueCodec | None
    tenant: TenantSource
    text_storage: bool  # armoured envelope (a ``text`` column) instead of bytea
    #: text or varchar without a length, read as itself: ASCII without NUL is
    #: then canonical as it is (``to_canonical`` would return it unchanged).
    ascii_as_is: bool
    #: ``$k::type``: read as the cast's type, then converted (``_cast_param``).
    cast: ValueCast | None


@dataclass(frozen=True, slots=True)
class BindSealer:
    """Per prepared statement with a Rewrite: what each Bind does, derived once.

    Depends only on the plan and the client's declared types, both fixed at
    Parse, so it lives as long as its StatementCrypto.
    """

    nulls: tuple[int, ...]  # 0-based indexes of REPLACE_WITH_NULL parameters
    seals: tuple[ParamSeal, ...]
    formats_added: tuple[int, ...]
    #: For ``SessionCrypto._bind_one_tenant``, None when it does not apply: per
    #: client parameter its ParamSeal, None for one passed as it came. It
    #: applies to a statement that only seals (no added parameters, none
    #: replaced by NULL, no casts) with one tenant source for every value:
    #: the one-row INSERT or UPDATE.
    by_index: tuple[ParamSeal | None, ...] | None = None
    #: The ParamSeals of ``by_index`` in parameter order; whether one stores text.
    ordered: tuple[ParamSeal, ...] = ()
    columns: tuple[str, ...] = ()  # their AAD columns
    text_storage: bool = False
    #: Format sections seen in this statement's Binds (``_format_section``).
    sections: dict[bytes, tuple[tuple[int, ...], bytes]] = dataclasses.field(
        default_factory=dict, compare=False
    )

    @classmethod
    def of(
        cls, plan: Rewrite, client_types: Sequence[int], offset_required: bool = False
    ) -> BindSealer:
        """``offset_required``: the session's TimeZone is not UTC (``SessionCrypto``)."""
        nulls: list[int] = []
        seals: list[ParamSeal] = []
        for p in plan.params:
            i = p.index - 1
            if p.action is BindAction.REPLACE_WITH_NULL:
                nulls.append(i)
            elif p.action is BindAction.SEAL:
                assert p.column is not None
                assert p.tenant is not None
                target = column_codec(p.column)
                if offset_required and target.logical_type == "timestamptz":
                    target = timestamptz_offset_required()
                from_float = float_param_codec(_declared(client_types, i), target)
                if from_float is not None:  # real/double precision: cast as Postgres does
                    target, via = from_float, None
                else:
                    via = _binary_reader(_declared(client_types, i), target)
                seals.append(
                    ParamSeal(
                        i,
                        p.column,
                        p.column.qualified,
                        target,
                        via,
                        p.tenant,
                        p.column.storage == "text",
                        target.logical_type in _TEXT_BINARY_TYPES
                        and not p.column.type_modifier
                        and via is None
                        and from_float is None
                        and p.cast is None,
                        p.cast,
                    )
                )
        by_index: tuple[ParamSeal | None, ...] | None = None
        count = plan.client_param_count
        if (
            seals
            and not nulls
            and not plan.slots
            and all(ps.cast is None and ps.index < count for ps in seals)
            and all(ps.tenant == seals[0].tenant for ps in seals)
        ):
            one: list[ParamSeal | None] = [None] * count
            for ps in seals:
                one[ps.index] = ps
            by_index = tuple(one)
        ordered = tuple(ps for ps in by_index or () if ps is not None)
        return cls(
            tuple(nulls),
            tuple(seals),
            plan.formats_added,
            by_index,
            ordered,
            tuple(ps.qualified for ps in ordered),
            any(ps.text_storage for ps in ordered),
        )


# --- the process-wide part ----------------------------------------------------------


class Encryption:
    """Rules, planner, catalog map and field crypto shared by every session."""

    def __init__(
        self,
        rules: Rules,
        crypto: FieldCrypto,
        catalog: CatalogMap,
        *,
        service_dsn: str,
        plan_cache_size: int = 10_000,
        opened_rows_bytes: int = OPENED_ROWS_BYTES,
    ) -> None:
        self.rules = rules
        self.crypto = crypto
        self.catalog = catalog
        self.planner = Planner(rules, plan_cache_size)
        self.service_dsn = service_dsn
        self.refusals = 0
        self.rows_opened = 0
        self.metrics = Metrics()  # the proxy replaces it with its own
        # key id -> True: ids a key load found neither in the store nor destroyed
        self.missing_key_ids: TTLCache[int, bool] = TTLCache(_MISSING_KEY_MAX, _MISSING_KEY_TTL_S)
        #: Opened DataRows by their stored bytes (0 bytes: none are remembered).
        self.opened_rows = OpenedRows(opened_rows_bytes)

    @classmethod
    async def start(cls, config: Config) -> Encryption:
        """Connect the key store and read the catalog; raises on any mismatch."""
        import asyncpg

        from crypto.field import FieldCrypto
        from crypto.master import load_master_keys

        if config.service_dsn is None:
            raise ValueError("encrypted tables need service_dsn (pgseal's own connection)")
        masters = load_master_keys(config.master_keys)
        crypto = await FieldCrypto.connect(
            config.service_dsn,
            masters,
            ttl_seconds=config.key_cache.ttl_seconds,
            max_keys=config.key_cache.max_keys,
        )
        try:
            connection = await asyncpg.connect(config.service_dsn)
            try:
                catalog = await load_catalog(connection, config.rules)
                set_server_version(int(await connection.fetchval("SHOW server_version_num")))
            finally:
                await connection.close()
        except BaseException:
            await crypto.close()
            raise
        return cls(
            config.rules,
            crypto,
            catalog,
            service_dsn=config.service_dsn,
            plan_cache_size=config.plan_cache_size,
            opened_rows_bytes=config.key_cache.opened_rows,
        )

    async def _read_catalog(self, rules: Rules) -> CatalogMap:
        import asyncpg

        connection: asyncpg.Connection[Any] = await asyncpg.connect(self.service_dsn)
        try:
            catalog = await load_catalog(connection, rules)
            set_server_version(int(await connection.fetchval("SHOW server_version_num")))
            return catalog
        finally:
            await connection.close()

    async def refresh_catalog(self) -> None:
        """Re-read OIDs and attnums (after DDL seen through the proxy)."""
        self.catalog = await self._read_catalog(self.rules)

    async def reload_rules(self, rules: Rules) -> None:
        """SIGHUP: re-read the catalog for ``rules``, new or not; on error nothing changes.

        The catalog is read even when the rules did not change: DDL made straight
        on Postgres (a column dropped and added again moves its attnum) is
        invisible to pgseal, and SIGHUP is how the DBA tells it to look again.
        Statements prepared before keep their plans; new ones use the new rules.
        """
        changed = rules != self.rules
        try:
            catalog = await self._read_catalog(rules)
        except Exception as exc:
            if changed:
                log.error("new column rules not applied, keeping the running ones: %s", exc)
            else:
                log.error("catalog map not re-read, keeping the running one: %s", exc)
            return
        self.catalog = catalog
        if not changed:
            log.info("catalog map re-read on reload: column rules unchanged")
            return
        self.rules = rules
        self.planner = Planner(rules, self.planner.cache.maxsize)
        log.info("column rules reloaded: %d tables", len(rules.tables))

    async def load_keys(self, need: NeedKeys) -> None:
        for tenant in sorted(need.tenants):
            await self.crypto.prefetch_tenant(tenant)
        # pgseal.keys.key_id is a positive bigint: any other id (a tampered value,
        # or bytes that only look like an envelope) cannot be in the store, and
        # asking for it would fail the whole lookup.
        possible = {k for k in need.key_ids if 0 < k < _MAX_KEY_ID}
        for key_id in need.key_ids - possible:
            self.missing_key_ids[key_id] = True
        if possible:
            # Only what the store said it lacks: a key that loaded while the cache
            # was being flushed (a LISTEN reconnect after a Postgres restart) is
            # merely uncached, and the retry loads it again.
            for key_id in await self.crypto.prefetch(possible):
                self.missing_key_ids[key_id] = True

    async def close(self) -> None:
        await self.crypto.close()

    def session(self, startup_params: dict[str, str]) -> SessionCrypto:
        return SessionCrypto(self, _startup_tenant(startup_params))


def _startup_tenant(params: dict[str, str]) -> str | None:
    """``-c pgseal.tenant=X`` in ``options``, or a ``pgseal.tenant`` startup parameter."""
    tenant = params.get("pgseal.tenant")
    options = params.get("options", "")
    words = options.replace("\\ ", "\x00").split()
    for i, word in enumerate(words):
        word = word.replace("\x00", " ")
        if word == "-c" and i + 1 < len(words):
            word = "--" + words[i + 1].replace("\x00", " ")
        elif word.startswith("-c"):
            word = "--" + word[2:]
        if word.startswith("--pgseal.tenant="):
            tenant = word.split("=", 1)[1]
    return tenant or None


# --- one session's part -------------------------------------------------------------


class SessionCrypto:
    """One connection's encryption state: tenant, statement plans, portal shapes."""

    def __init__(self, encryption: Encryption, default_tenant: str | None) -> None:
        self.enc = encryption
        self.default_tenant = default_tenant
        self.session_tenant = default_tenant
        self.local_tenant: str | None = None
        self.local_set = False
        self._tenant_at_block_start = default_tenant
        self.statements: dict[str, StatementCrypto] = {}
        self.portals: dict[str, PortalState] = {}
        self.catalog_stale = False
        #: The COPY transform of the Query just sent (proxy.copy_stream), if any.
        self.copy_pending: object | None = None
        #: (id of a RowColumns, result formats) -> how its DataRows are opened.
        self.row_plans: dict[tuple[int, tuple[int, ...]], RowPlan] = {}
        #: The client_encoding Postgres reported when it is one pgseal's UTF-8
        #: plaintext does not fit (LATIN1, WIN1252, ...); None while it fits.
        self.foreign_encoding: str | None = None
        #: A statement that may change client_encoding is in flight (the
        #: session clears it when Postgres has answered everything sent).
        self.encoding_changing = False
        #: The same for TimeZone, and whether the reported one is UTC: unless
        #: it is and nothing may change it, timestamptz text needs an offset.
        self.timezone_changing = False
        self.timezone_utc = True
        self.offset_required = False

    # -- tenant --------------------------------------------------------------------
    @property
    def tenant(self) -> str | None:
        return self.local_tenant if self.local_set else self.session_tenant

    def _apply_tenant(self, command: TenantCommand) -> None:
        if command.local:
            self.local_tenant = command.value
            self.local_set = True
        else:
            self.session_tenant = self.default_tenant if command.value is None else command.value
            if command.value is None:
                self.local_set = False

    def _apply_statements(self, statements: Sequence[StatementInfo]) -> None:
        for info in statements:
            if info.tenant_command is not None:
                self._apply_tenant(info.tenant_command)
            if info.is_ddl:
                self.catalog_stale = True

    def note_encodings(self, client_encoding: str, server_encoding: str) -> None:
        """The session's encodings, from Postgres's ParameterStatus.

        pgseal seals and opens text as UTF-8, and Postgres converts only what it
        sees in plaintext: under any other client_encoding an opened value
        would reach the client in the wrong encoding and a client's value would
        be sealed as bytes it did not mean. So while the client_encoding is not
        UTF8 (or SQL_ASCII on a UTF8 or SQL_ASCII database: no conversion
        either way), statements on encrypted tables are refused, and so are
        the rows of one already running.
        """
        fits = client_encoding == "UTF8" or (
            client_encoding == "SQL_ASCII" and server_encoding in ("UTF8", "SQL_ASCII", "")
        )
        foreign = None if fits else client_encoding
        if foreign != self.foreign_encoding:
            self.foreign_encoding = foreign
            self.row_plans.clear()  # remade for the new encoding
            for portal in self.portals.values():
                portal.row_plan = None

    def note_timezone(self, setting: str) -> None:
        """The session's TimeZone, from Postgres's ParameterStatus.

        Postgres reads timestamptz text without a zone in it; pgseal
        canonicalises protected values before Postgres sees them, in UTC. So
        unless the TimeZone is UTC (and no statement that may change it is in
        flight), such a value is refused rather than stored shifted
        (``rules.pgtypes.timestamptz_offset_required``).
        """
        self.timezone_utc = is_utc_zone(setting)
        self._update_offset_rule()

    def settings_settled(self) -> None:
        """Everything sent has been answered: the reported settings are current."""
        self.encoding_changing = False
        if self.timezone_changing:
            self.timezone_changing = False
            self._update_offset_rule()

    def timezone_may_change(self) -> None:
        self.timezone_changing = True
        self._update_offset_rule()

    def _update_offset_rule(self) -> None:
        required = self.timezone_changing or not self.timezone_utc
        if required != self.offset_required:
            self.offset_required = required
            for stmt in self.statements.values():
                stmt.sealer = None  # remade with the timestamptz codec that applies

    def value_codec(self, column: ProtectedColumn) -> ValueCodec:
        """The codec a client's value for ``column`` is read with in this session."""
        found = column_codec(column)
        if self.offset_required and found.logical_type == "timestamptz":
            return timestamptz_offset_required()
        return found

    def _encoding_refusal(self, what: str) -> Refused:
        if self.foreign_encoding is None:
            return refusal(
                f"pgseal: a change of client_encoding in flight before a statement on "
                f"encrypted {what} is not supported",
                "send the SET on its own and wait for its answer: Postgres tells pgseal "
                "the new encoding when everything sent so far is answered",
            )
        return refusal(
            f"pgseal: client_encoding {self.foreign_encoding} on encrypted {what} is not supported",
            "pgseal seals and opens text as UTF-8: SET client_encoding = 'UTF8' "
            "(or connect with client_encoding=UTF8)",
        )

    def _check_encoding(self, statements: Sequence[StatementInfo]) -> None:
        if self.foreign_encoding is None and not self.encoding_changing:
            return
        for info in statements:
            if info.tables:
                raise self._encoding_refusal(f"table {sorted(info.tables)[0]}")

    def transaction_ended(self, rolled_back: bool) -> None:
        """ReadyForQuery 'I': SET LOCAL ends; a rolled-back SET is undone."""
        self.local_set = False
        self.local_tenant = None
        if rolled_back:
            self.session_tenant = self._tenant_at_block_start
        self._tenant_at_block_start = self.session_tenant
        self.portals.clear()

    # -- client messages -----------------------------------------------------------
    def parse(self, parse: codec.Parse) -> bytes | None:
        """Plan a Parse; the new message, or None to forward it unchanged."""
        plan = self.enc.planner.plan(parse.query, len(parse.param_types))
        self._count(plan)
        statements = _statements_of(plan)
        self._check_tenant_required(statements)
        self._check_encoding(statements)
        copy = None
        if any(info.copy is not None for info in statements):
            self._copy(statements, parse.query)  # refused at Parse, as a Query would be
            copy = (tuple(statements), parse.query)
        self._apply_statements(statements)
        self.statements[parse.name] = StatementCrypto(plan, parse.param_types, copy=copy)
        if not isinstance(plan, Rewrite):
            return None
        return codec.encode_parse(parse.name, plan.sql_extended, plan.parse_oids(parse.param_types))

    def forget_statement(self, name: str) -> None:
        self.statements.pop(name, None)

    def bind(self, body: bytes) -> tuple[bytes | None, PortalState]:
        """Seal a Bind's parameters; the new message (or None) and the portal state."""
        first = body.find(b"\x00")
        second = body.find(b"\x00", first + 1)
        if first < 0 or second < 0:
            raise codec.ProtocolViolation("string is not NUL-terminated")
        name = body[first + 1 : second].decode(errors="surrogateescape")
        stmt = self.statements.get(name)
        if stmt is not None and (self.foreign_encoding is not None or self.encoding_changing):
            # Prepared before the encoding changed: its values would be misread now.
            self._check_encoding(_statements_of(stmt.plan))
        if (
            stmt is not None
            and stmt.columns is not None
            and not stmt.columns.protected
            and not isinstance(stmt.plan, Rewrite)
            and stmt.copy is None
        ):
            # The common case: nothing to seal, nothing to open. No decoding.
            portal = PortalState(body[:first].decode(errors="surrogateescape"), name, stmt.columns)
            self.portals[portal.portal] = portal
            return None, portal
        if stmt is not None and isinstance(stmt.plan, Rewrite) and stmt.copy is None:
            sealer = stmt.sealer
            if sealer is None:
                sealer = stmt.sealer = BindSealer.of(
                    stmt.plan, stmt.client_types, self.offset_required
                )
            if sealer.by_index is not None:
                done = self._bind_one_tenant(body, first, second, stmt, sealer, sealer.by_index)
                if done is not None:
                    message, portal = done
                    self.portals[portal.portal] = portal
                    return message, portal
        bind = codec.decode_bind(body)
        portal = PortalState(bind.portal, bind.statement, result_formats=tuple(bind.result_formats))
        if stmt is not None:
            portal.columns = stmt.columns
            if stmt.copy is not None:
                # Made per Bind: the portal's Execute arms it (a COPY has no parameters).
                portal.copy = self._copy(*stmt.copy)
        self.portals[bind.portal] = portal
        if stmt is None or not isinstance(stmt.plan, Rewrite):
            return None, portal
        return self._bind_rewrite(bind, stmt, stmt.plan), portal

    def _bind_one_tenant(
        self,
        body: bytes,
        first: int,
        second: int,
        stmt: StatementCrypto,
        sealer: BindSealer,
        seals: tuple[ParamSeal | None, ...],
    ) -> tuple[bytes, PortalState] | None:
        """The Bind of a one-tenant write (``BindSealer.by_index``), rewritten in one pass.

        The Bind's bytes are framed once; parameters passed as they came are
        copied as runs of the original bytes, each sealed one replaced by its
        envelope. Only the plain case is done here: a Bind ``decode_bind``
        would reject, a parameter count that is not the statement's, a value
        that may be an envelope already or that its column's codec rejects,
        a tenant that is NULL or refused or whose key is not cached: each
        returns None with nothing changed, and the exact path
        (``_bind_rewrite``) handles the Bind, errors included. What both make
        of a Bind is the same (tests/proxy/test_encryption_bind_one_tenant.py
        compares them on generated and malformed Binds).
        """
        end = len(body)
        names = body[:second]
        if not names.isascii():
            return None  # the exact path decodes them strictly
        pos = second + 1
        if pos + 2 > end:
            return None
        params_start = pos + 4 + 2 * (body[pos] << 8 | body[pos + 1])
        section = body[pos:params_start]
        known = sealer.sections.get(section)
        if known is None:
            known = _format_section(section, seals)
            if known is None:
                return None
            if len(sealer.sections) < _MAX_FORMAT_SECTIONS:
                sealer.sections[section] = known
        formats, sealed_section = known
        source = sealer.ordered[0].tenant
        tenant_at = source.index - 1 if isinstance(source, TenantFromParam) else -1
        tenant_data: bytes | None = None
        plaintexts: list[bytes | None] = []  # per sealed parameter, in order; None: NULL
        spans: list[int] = []  # where each sealed value (its length first) starts and ends
        holes = False  # some sealed parameter is NULL
        unpack = _I32.unpack_from
        pos = params_start
        try:
            for i in range(len(seals)):
                (length,) = unpack(body, pos)
                ps = seals[i]
                start = pos
                pos += 4
                if length < 0:
                    if length != -1:
                        return None
                    if ps is not None:
                        plaintexts.append(None)
                        holes = True
                    continue  # NULL stays NULL
                # Past the end, the next length or the result formats are
                # read past it too: the framing fails below.
                stop = pos + length
                if i == tenant_at:
                    tenant_data = body[pos:stop]
                if ps is not None:
                    if stop > end:
                        return None
                    data = body[pos:stop]
                    lead = data[:1]
                    if lead in _ENVELOPE_LEADS and (
                        lead == b"\x01"
                        or data.startswith(_ARMOR_PREFIX)
                        or data.startswith(b"\\x01")
                    ):
                        return None  # maybe an envelope already: the exact path looks
                    if ps.ascii_as_is and data.isascii() and 0 not in data:
                        plaintexts.append(data)
                    elif formats[i] == 1 and ps.via is not None:
                        plaintexts.append(ps.target.to_canonical(ps.via.to_canonical(data, 1), 0))
                    else:
                        plaintexts.append(ps.target.to_canonical(data, formats[i]))
                    spans.append(start)
                    spans.append(stop)
                pos = stop
            nresults = body[pos] << 8 | body[pos + 1]
        except (struct.error, IndexError, ValueFormatError):
            return None
        if pos + 2 + 2 * nresults != end:
            return None
        results = _int16s(nresults).unpack_from(body, pos + 2)
        sealing: Sequence[ParamSeal] = sealer.ordered
        columns: Sequence[str] = sealer.columns
        given: list[bytes] = plaintexts  # type: ignore[assignment]  # no None but holes
        if holes:
            sealing = [ps for ps, p in zip(sealing, plaintexts, strict=True) if p is not None]
            given = [p for p in plaintexts if p is not None]
            columns = [ps.qualified for ps in sealing]
            out = list(formats)
            for ps in sealing:
                out[ps.index] = 1
            sealed_section = _bind_formats(len(seals)).pack(len(seals), *out, len(seals))
        envelopes: list[bytes] = []
        if sealing:
            sealed = self._seal_one_tenant(
                source, tenant_data, formats, stmt, sealing[0].column, columns, given
            )
            if sealed is None:
                return None
            envelopes = sealed
            if sealer.text_storage:
                envelopes = [
                    armor(e).encode("ascii") if ps.text_storage else e
                    for ps, e in zip(sealing, envelopes, strict=True)
                ]
        parts = [names, b"\x00", sealed_section]
        prev = params_start
        edges = iter(spans)
        for envelope, start, stop in zip(envelopes, edges, edges, strict=True):
            if start > prev:
                parts.append(body[prev:start])
            n = len(envelope)
            parts.append(_LENGTHS[n] if n < 1024 else _I32.pack(n))
            parts.append(envelope)
            prev = stop
        parts.append(body[prev:])
        rewritten = b"".join(parts)
        portal = PortalState(
            names[:first].decode(), names[first + 1 :].decode(), stmt.columns, results
        )
        return b"B" + _U32.pack(len(rewritten) + 4) + rewritten, portal

    def _seal_one_tenant(
        self,
        source: TenantSource,
        tenant_data: bytes | None,
        formats: tuple[int, ...],
        stmt: StatementCrypto,
        column: ProtectedColumn,
        columns: Sequence[str],
        plaintexts: list[bytes],
    ) -> list[bytes] | None:
        """``_bind_one_tenant``'s envelopes; None (nothing counted) when not the plain case.

        ``column`` is the first sealed one: the one a refusal would name.
        """
        if isinstance(source, TenantFromParam):
            if tenant_data is None:
                return None
            try:
                tenant = self._tenant_param(
                    tenant_data, formats[source.index - 1], stmt, source.index - 1, column
                )
            except Refused:
                return None
        elif isinstance(source, TenantLiteral):
            tenant = source.value
        else:
            found = self.tenant
            if found is None:
                return None
            tenant = found
        session = self.tenant
        if session is not None and tenant != session:
            return None
        try:
            envelopes = self.enc.crypto.try_seal_many_cached(tenant, columns, plaintexts)
        except CryptoError:
            return None
        if envelopes is not None:
            self.enc.metrics.values_sealed += len(envelopes)
        return envelopes

    def _bind_rewrite(self, bind: codec.Bind, stmt: StatementCrypto, plan: Rewrite) -> bytes:
        params = bind.params
        count = len(params)
        if count != plan.client_param_count:
            raise refusal(
                f"bind message supplies {count} parameters, but prepared "
                f'statement "{bind.statement}" requires {plan.client_param_count}',
                sqlstate="08P01",
            )
        sealer = stmt.sealer
        if sealer is None:
            sealer = stmt.sealer = BindSealer.of(plan, stmt.client_types, self.offset_required)
        given = bind.param_formats
        formats = given * count if len(given) == 1 else given[:] if given else [0] * count
        values: list[bytes | None] = params[:]
        for i in sealer.nulls:
            values[i] = None
        need_tenants: set[str] = set()
        need_keys: set[int] = set()
        # Every field of a row names the same tenant source: resolve it once.
        tenants: dict[int, str] = {}
        source: TenantSource | None = None
        tenant = ""
        sealing: list[ParamSeal] = []
        plaintexts: list[bytes] = []
        owners: list[str] | None = None  # per field, once they are not all one tenant
        for ps in sealer.seals:
            i = ps.index
            data = params[i]
            if data is None:
                continue
            if ps.tenant is not source:
                source = ps.tenant
                found = tenants.get(id(source))
                if found is None:
                    found = tenants[id(source)] = self._tenant(source, bind, stmt, ps.column)
                if owners is None and sealing and found != tenant:
                    owners = [tenant] * len(sealing)
                tenant = found
            fmt = formats[i]
            if data[:1] in _ENVELOPE_LEADS:
                try:
                    existing = self._existing_envelope(ps.column, tenant, data, fmt)
                except NeedKeys as exc:
                    need_tenants |= exc.tenants
                    need_keys |= exc.key_ids
                    continue
                if existing is not None:
                    values[i] = _stored(ps.column, existing)
                    formats[i] = 1
                    continue
            if ps.cast is not None:
                canonical = self._cast_param(ps.column, ps.cast, data, fmt, stmt, i)
            elif ps.ascii_as_is and data.isascii() and 0 not in data:
                # (``0 in``, not ``b"\x00" in``: a bytes needle first fails as an
                # int, a TypeError made and dropped on every call.)
                canonical = data  # what the text codec's to_canonical returns, sooner
            else:
                try:
                    if fmt == 1 and ps.via is not None:
                        canonical = ps.target.to_canonical(ps.via.to_canonical(data, 1), 0)
                    else:
                        canonical = ps.target.to_canonical(data, fmt)
                except ValueFormatError as exc:
                    raise _invalid_value(ps.column, exc) from None
            sealing.append(ps)
            plaintexts.append(canonical)
            if owners is not None:
                owners.append(tenant)
        if owners is not None:
            for one in dict.fromkeys(owners):
                picked = [k for k, owner in enumerate(owners) if owner == one]
                self._seal_fields(
                    one,
                    [sealing[k] for k in picked],
                    [plaintexts[k] for k in picked],
                    values,
                    formats,
                    need_tenants,
                )
        elif sealing:
            self._seal_fields(tenant, sealing, plaintexts, values, formats, need_tenants)
        if plan.slots:
            for slot in plan.slots:
                try:
                    values.append(self._slot_value(slot, bind, stmt))
                except NeedKeys as exc:
                    need_tenants |= exc.tenants
                    need_keys |= exc.key_ids
            formats += sealer.formats_added
        if need_tenants or need_keys:
            raise NeedKeys(frozenset(need_tenants), frozenset(need_keys))
        return codec.rebind(bind, formats, values)

    def _seal_fields(
        self,
        tenant: str,
        seals: list[ParamSeal],
        plaintexts: list[bytes],
        values: list[bytes | None],
        formats: list[int],
        need_tenants: set[str],
    ) -> None:
        """Seal one tenant's fields of a Bind into ``values`` (binary format)."""
        columns = [ps.qualified for ps in seals]
        try:
            envelopes = self.enc.crypto.try_seal_many_cached(tenant, columns, plaintexts)
        except CryptoError as exc:
            raise crypto_refusal(exc) from None
        if envelopes is None:
            need_tenants.add(tenant)
            return
        self.enc.metrics.values_sealed += len(envelopes)
        for ps, envelope in zip(seals, envelopes, strict=True):
            values[ps.index] = armor(envelope).encode("ascii") if ps.text_storage else envelope
            formats[ps.index] = 1

    def query(self, sql: str) -> bytes | None:
        """Plan a simple Query; the new message, or None to forward it unchanged."""
        plan = self.enc.planner.plan(sql, 0)
        self._count(plan)
        statements = _statements_of(plan)
        self._check_tenant_required(statements)
        self._check_encoding(statements)
        self.copy_pending = None
        if any(info.copy is not None for info in statements):
            self.copy_pending = self._copy(statements, sql)
        if not isinstance(plan, Rewrite):
            self._apply_statements(statements)
            return None
        values: list[bytes | None] = []
        need_tenants: set[str] = set()
        for slot in plan.slots:
            try:
                values.append(self._slot_value(slot, None, None))
            except NeedKeys as exc:
                need_tenants |= exc.tenants
        if need_tenants:
            raise NeedKeys(frozenset(need_tenants))
        self._apply_statements(statements)
        return codec.message(b"Q", plan.render_simple(values).encode() + b"\x00")

    def _copy(self, statements: Sequence[StatementInfo], sql: str) -> object | None:
        from proxy.copy_stream import copy_transform, unsupported_copy_options

        info = next(i for i in statements if i.copy is not None)
        assert info.copy is not None
        table = info.copy.table or sorted(info.tables)[0]
        if len(statements) != 1:
            raise refusal(
                f"pgseal: COPY on encrypted table {table} must be the only statement of its Query"
            )
        option = unsupported_copy_options(sql)
        if option is not None:
            raise refusal(
                f"pgseal: COPY option {option} on encrypted table {table} is not supported",
                "use the format's default delimiter, NULL and quoting",
            )
        return copy_transform(self, info.copy, sql)

    def _count(self, plan: Plan) -> None:
        """Metrics by plan kind; a refusal raises here."""
        metrics = self.enc.metrics
        if isinstance(plan, Refuse):
            metrics.queries["refuse"] += 1
            match = _OPERATION.match(plan.message)
            metrics.refusals[match.group(1) if match else "other"] += 1
            self.enc.refusals += 1
            raise refusal(plan.message, plan.hint, plan.sqlstate)
        metrics.queries["rewrite" if isinstance(plan, Rewrite) else "passthrough"] += 1

    def _check_tenant_required(self, statements: Sequence[StatementInfo]) -> None:
        if not self.enc.rules.require_tenant or self.tenant is not None:
            return
        for info in statements:
            if info.tables:
                raise refusal(
                    f"pgseal: {sorted(info.tables)[0]} needs a business: this session has "
                    "no tenant (require_tenant is on)",
                    "SET pgseal.tenant = '<business id>' first",
                    sqlstate="42501",
                )

    # -- values ----------------------------------------------------------------------
    def _tenant(
        self,
        source: TenantSource,
        bind: codec.Bind | None,
        stmt: StatementCrypto | None,
        column: ProtectedColumn,
        search: bool = False,
    ) -> str:
        if isinstance(source, TenantLiteral):
            tenant: str | None = source.value
        elif isinstance(source, TenantFromParam):
            assert bind is not None
            assert stmt is not None
            i = source.index - 1
            data = bind.params[i] if i < len(bind.params) else None
            tenant = self._tenant_param(data, bind.param_format(i), stmt, i, column)
        else:
            assert isinstance(source, SessionTenant)
            tenant = self.tenant
            if tenant is None:
                if search:
                    raise refusal(
                        f"pgseal: cannot tell which business this search of "
                        f"{column.qualified} is for (blind indexes are per business)",
                        f"add AND {self._tenant_column(column)} = ... to the WHERE clause, or "
                        "SET pgseal.tenant = '<business id>' for the session",
                        sqlstate="42501",
                    )
                raise refusal(
                    f"pgseal: cannot tell which business owns this write to {column.qualified}",
                    "set the tenant column in the statement, or SET pgseal.tenant = "
                    "'<business id>' for the session",
                    sqlstate="42501",
                )
        assert tenant is not None
        session = self.tenant
        if session is not None and tenant != session:
            raise refusal(
                f"pgseal: this session belongs to another business than the one this "
                f"statement uses for {column.qualified}",
                sqlstate="42501",
            )
        return tenant

    def _tenant_column(self, column: ProtectedColumn) -> str:
        table = self.enc.rules.tables.get(f"{column.schema}.{column.table}")
        return table.tenant_column if table else "the tenant column"

    def _tenant_param(
        self,
        data: bytes | None,
        fmt: int,
        stmt: StatementCrypto,
        i: int,
        column: ProtectedColumn,
    ) -> str:
        """The tenant a write names in parameter ``i`` (``data`` in format ``fmt``)."""
        if data is None:
            raise refusal(
                f"pgseal: the business (tenant column) of this write to {column.qualified} is NULL",
                sqlstate="23502",
            )
        oid = _declared(stmt.client_types, i) or _declared(stmt.server_types, i)
        if not oid:
            info = self.enc.catalog.tables.get(f"{column.schema}.{column.table}")
            oid = info.tenant_type_oid if info else 0
        tenant_codec = _TENANT_CODECS.get(_OID_TO_LOGICAL.get(oid, ""))
        try:
            if tenant_codec is not None:
                return tenant_codec.to_canonical(data, fmt).decode()
            if fmt == 0:
                return data.decode()
        except (ValueFormatError, UnicodeDecodeError) as exc:
            raise refusal(
                f"pgseal: invalid business id for {column.qualified}: {exc}", sqlstate="22P02"
            ) from None
        raise refusal(
            f"pgseal: cannot read the business id of this write to {column.qualified} "
            "in binary format",
            "send the tenant column as text, integer or uuid",
        )

    def _canonical_param(
        self, column: ProtectedColumn, data: bytes, fmt: int, stmt: StatementCrypto | None, i: int
    ) -> bytes:
        plan = stmt.plan if stmt is not None else None
        if isinstance(plan, Rewrite) and plan.has_casts:
            cast = _param_cast(stmt, i)
            if cast is not None:  # ``$k::type``: read as the cast's type, then converted
                return self._cast_param(column, cast, data, fmt, stmt, i)
        target = self.value_codec(column)
        try:
            declared = _declared(stmt.client_types, i) if stmt is not None else 0
            from_float = float_param_codec(declared, target)
            if from_float is not None:  # real/double precision: cast as Postgres does
                return from_float.to_canonical(data, fmt)
            via = _binary_reader(declared, target) if fmt == 1 else None
            if via is not None:
                return target.to_canonical(via.to_canonical(data, 1), 0)
            return target.to_canonical(data, fmt)
        except ValueFormatError as exc:
            raise _invalid_value(column, exc) from None

    def _cast_param(
        self,
        column: ProtectedColumn,
        cast: ValueCast,
        data: bytes,
        fmt: int,
        stmt: StatementCrypto | None,
        i: int,
    ) -> bytes:
        """The canonical value of a parameter written ``$k::type`` (rules.casts)."""
        declared = 0
        if stmt is not None:
            declared = _declared(stmt.client_types, i)
            plan = stmt.plan
            passed = isinstance(plan, Rewrite) and plan.params[i].action is BindAction.PASS
            if not declared and passed:
                declared = _declared(stmt.server_types, i)  # Postgres typed it from a plain use
        try:
            if self.offset_required and cast.logical == "timestamptz" and fmt == 0:
                timestamptz_offset_required().to_canonical(data, 0)  # refuses one without
            return convert_value(column, cast, data, fmt, declared)
        except ValueFormatError as exc:
            raise refusal(
                f"pgseal: invalid value for encrypted column {column.qualified}: {exc}",
                sqlstate=exc.sqlstate,
            ) from None

    def _seal_param(
        self,
        column: ProtectedColumn,
        tenant: str,
        data: bytes,
        fmt: int,
        stmt: StatementCrypto | None,
        i: int,
    ) -> bytes:
        existing = self._existing_envelope(column, tenant, data, fmt)
        if existing is not None:
            return _stored(column, existing)
        canonical = self._canonical_param(column, data, fmt, stmt, i)
        return _stored(column, self._seal(column, tenant, canonical))

    def _existing_envelope(
        self, column: ProtectedColumn, tenant: str, data: bytes, fmt: int
    ) -> bytes | None:
        """``data`` if it is an envelope that really opens as this column's, for ``tenant``."""
        candidate: bytes | None = None
        if is_armored(data):
            try:
                candidate = dearmor(data, column.qualified)
            except CryptoError:
                return None
        elif fmt == 1 and column.logical_type != "jsonb" and is_envelope(data):
            # (binary jsonb always starts with its own version byte 0x01)
            candidate = data
        elif (fmt == 0 or column.logical_type in _TEXT_BINARY_TYPES) and data[:4] == b"\\x01":
            # bytea hex text; text and varchar send the same bytes in binary format
            try:
                candidate = bytes.fromhex(data[2:].decode("ascii"))
            except (ValueError, UnicodeDecodeError):
                return None
        if candidate is None or not is_envelope(candidate):
            return None
        crypto = self.enc.crypto
        try:
            opened = crypto.try_open_cached(column.qualified, candidate, tenant=tenant)
        except CryptoError:
            return None  # not ours for this column: it is a value like any other
        if opened is None:
            key_id = peek_key_id(candidate)
            destroyed = crypto.cache.destroyed_owner(key_id) is not None
            if destroyed or key_id in self.enc.missing_key_ids:
                return None  # cannot be one of ours: seal it like any other value
            raise NeedKeys(key_ids=frozenset({key_id}))
        return candidate

    def tenant_text(self, data: bytes, fmt: int, oid: int) -> str:
        """A tenant column value as text (the key store's tenant name)."""
        logical = _OID_TO_LOGICAL.get(oid)
        if logical in _TENANT_TYPES:
            assert logical is not None
            return codec_for(logical).to_canonical(data, fmt).decode()
        if fmt == 0:
            return data.decode()
        raise ValueFormatError("binary business ids must be integer, bigint or uuid")

    def tenant_wire(self, tenant: str, fmt: int, oid: int) -> bytes:
        """The inverse of :meth:`tenant_text`: a tenant as a column value in ``fmt``."""
        if fmt == 0:
            return tenant.encode()
        logical = _OID_TO_LOGICAL.get(oid)
        if logical in _TENANT_TYPES:
            assert logical is not None
            return codec_for(logical).from_canonical(tenant.encode(), 1)
        raise ValueFormatError("binary business ids must be integer, bigint or uuid")

    def seal(self, column: ProtectedColumn, tenant: str, canonical: bytes) -> bytes:
        return self._seal(column, tenant, canonical)

    def blind(self, column: ProtectedColumn, tenant: str, canonical: bytes) -> bytes:
        return self._blind(column, tenant, canonical)

    def _seal(self, column: ProtectedColumn, tenant: str, canonical: bytes) -> bytes:
        try:
            sealed = self.enc.crypto.try_seal_cached(tenant, column.qualified, canonical)
        except CryptoError as exc:
            raise crypto_refusal(exc) from None
        if sealed is None:
            raise NeedKeys(tenants=frozenset({tenant}))
        self.enc.metrics.values_sealed += 1
        return sealed

    def _blind(self, column: ProtectedColumn, tenant: str, canonical: bytes) -> bytes:
        try:
            token = self.enc.crypto.try_blind_index_cached(
                tenant, column.qualified, canonical, column.normalize
            )
        except CryptoError as exc:
            raise crypto_refusal(exc) from None
        if token is None:
            raise NeedKeys(tenants=frozenset({tenant}))
        return token

    def _slot_value(
        self, slot: Slot, bind: codec.Bind | None, stmt: StatementCrypto | None
    ) -> bytes | None:
        action = slot.action
        column = action.column
        source = slot.source
        # Writes seal before they index, so a missing tenant of a write is
        # reported by its Seal; an index without a Seal is a search.
        search = not isinstance(action, Seal | TenantValue)
        tenant = self._tenant(slot.tenant, bind, stmt, column, search)
        if isinstance(action, TenantValue):
            return tenant.encode()
        if isinstance(source, ClientParamArray):
            assert bind is not None
            assert isinstance(action, BlindIndexArray)
            data = bind.params[source.index - 1]
            if data is None:
                return None
            fmt = bind.param_format(source.index - 1)
            try:
                elements = self.value_codec(column).array_elements(data, fmt)
            except ValueFormatError as exc:
                raise refusal(
                    f"pgseal: invalid array for encrypted column {column.qualified}: {exc}",
                    sqlstate=exc.sqlstate,
                ) from None
            tokens = [None if e is None else self._blind(column, tenant, e) for e in elements]
            return _bytea_array(tokens)
        if isinstance(source, ClientParam):
            assert bind is not None
            i = source.index - 1
            data = bind.params[i]
            if data is None:
                return None
            canonical = self._canonical_param(column, data, bind.param_format(i), stmt, i)
        else:
            assert isinstance(source, Literal)
            if source.text is None:
                return None
            if isinstance(action, Seal):
                existing = self._existing_envelope(column, tenant, source.text.encode(), 0)
                if existing is not None:
                    return _stored(column, existing)
            canonical = self._canonical_param(column, source.text.encode(), 0, None, 0)
        if isinstance(action, Seal):
            return _stored(column, self._seal(column, tenant, canonical))
        assert isinstance(action, BlindIndex)
        return self._blind(column, tenant, canonical)

    # -- server messages -------------------------------------------------------------
    def parameter_description(self, body: bytes, statement: str) -> bytes | None:
        stmt = self.statements.get(statement)
        if stmt is None:
            return None
        types = codec.decode_parameter_description(body)
        stmt.server_types = tuple(types)
        plan = stmt.plan
        if not isinstance(plan, Rewrite):
            return None
        arrays = {s.source.index for s in plan.slots if isinstance(s.source, ClientParamArray)}
        shown = types[: plan.client_param_count]
        declared = stmt.client_types
        for p in plan.params:
            if p.index > len(shown):
                continue
            if p.index <= len(declared) and declared[p.index - 1]:
                # A type the client gave in Parse is reported as it is, as Postgres
                # does (pgjdbc refuses a statement whose varchar comes back as text).
                shown[p.index - 1] = declared[p.index - 1]
            elif p.index in arrays and p.column is not None:
                shown[p.index - 1] = _ARRAY_OID.get(p.column.logical_type, 1009)
            elif p.logical_oid is not None:
                shown[p.index - 1] = p.logical_oid
        return codec.encode_parameter_description(shown)

    def row_description(self, body: bytes) -> tuple[bytes | None, RowColumns, tuple[int, ...]]:
        """Logical types for protected fields: new message (or None), shape, formats."""
        fields = codec.decode_row_description(body)
        formats = tuple(f.format for f in fields)
        catalog = self.enc.catalog
        protected: list[tuple[int, ProtectedColumn, ValueCodec]] = []
        for i, f in enumerate(fields):
            if not f.table_oid:
                continue
            column = catalog.protected(f.table_oid, f.attnum)
            if column is None:
                continue
            value_codec = column_codec(column)
            protected.append((i, column, value_codec))
            fields[i] = dataclasses.replace(
                f,
                type_oid=value_codec.oid,
                typlen=value_codec.type_size,
                typmod=value_codec.type_modifier,
            )
        if not protected:
            return None, RowColumns(len(fields), ()), formats
        shape = RowColumns(len(fields), tuple(protected))
        return codec.encode_row_description(fields), shape, formats

    def data_row(self, body: bytes, state: PortalState) -> bytes | None:
        """Open the protected values of one DataRow (raises NeedKeys / Refused)."""
        columns = state.columns
        if columns is None or not columns.protected:
            return None
        plan = self._plan_of(state, columns)
        enc = self.enc
        if plan.fields is None:
            return self._data_row_by_field(body, state, columns)
        known = plan.opened
        if known is not None:
            generation = enc.crypto.generation()
            enc.opened_rows.sync(generation)
            hit = known.get(body)
            if hit is not None:
                message, key, count = hit
                tenant = self.tenant
                if (tenant is None or key.tenant == tenant) and enc.crypto.still_cached(
                    key, generation
                ):
                    enc.crypto.hits += count
                    enc.metrics.values_opened += count
                    enc.rows_opened += 1
                    return message
        opened = self._data_row_fast(body, plan.fields, known, plan)
        if opened is not None:
            return opened
        return self._data_row_by_field(body, state, columns)

    def _plan_of(self, state: PortalState, columns: RowColumns) -> RowPlan:
        plan = state.row_plan
        if plan is not None and plan.columns is columns:
            return plan
        # A prepared statement's portals share its RowColumns: its plan is made
        # once per result formats, not once per execution. (The plan holds its
        # RowColumns, so the id in the key cannot be reused while it is here.)
        key = (id(columns), state.result_formats)
        plan = self.row_plans.get(key)
        if plan is None or plan.columns is not columns:
            if len(self.row_plans) >= _MAX_ROW_SHAPES:
                self.row_plans.clear()
            plan = self.row_plans[key] = (
                _row_plan(columns, state.result_formats, self.enc.opened_rows)
                if self.foreign_encoding is None
                else RowPlan(columns, None)  # the per-field path refuses
            )
        state.row_plan = plan
        return plan

    def data_rows(
        self, buf: bytes, pos: int, limit: int, state: PortalState
    ) -> tuple[list[bytes], int]:
        """The DataRows at ``buf[pos:]``, opened while they take the quick paths.

        The session's read loop hands over a whole run of a result's rows: one
        call instead of one framing step, one dispatch and one plan lookup per
        row, and the counters are added to once per run. Stops before the first
        message that is not a complete DataRow of a sane length, and before the
        first row that needs the per-field path (a key to load, an error to
        report): the session frames that one itself and calls :meth:`data_row`,
        so every case keeps its one handling. Returns the new messages and where
        the run stopped.
        """
        columns = state.columns
        assert columns is not None
        parts: list[bytes] = []
        plan = self._plan_of(state, columns)
        fields = plan.fields
        if fields is None:
            return parts, pos
        enc = self.enc
        crypto = enc.crypto
        known = plan.opened
        tenant = self.tenant
        generation = crypto.generation()
        if known is not None:
            enc.opened_rows.sync(generation)
        open_row = self._open_in_place if plan.binary else self._open_hex
        unpack = codec.unpack_length
        append = parts.append
        size = len(buf)
        hit_values = rows = values = 0
        # The key of a remembered row, once checked (the session's tenant's,
        # still cached, nothing invalidated): nothing can change that before
        # this call returns, so the rows it opened need no second check.
        checked: DataKey | None = None
        if known is not None and limit >= size:
            # Rows read again, the common run: only hits, then the loop below
            # takes over at the first miss. (With the limit at or above the
            # buffer's size, a row longer than the limit also ends past the buffer.)
            get = known.get
            while pos + 5 <= size and buf[pos] == 0x44:  # DataRow
                (length,) = unpack(buf, pos + 1)
                end = pos + 1 + length
                if length < 4 or end > size:
                    break
                hit = get(buf[pos + 5 : end])
                if hit is None:
                    break
                opener = hit[1]
                if opener is not checked:
                    if (tenant is not None and opener.tenant != tenant) or not crypto.still_cached(
                        opener, generation
                    ):
                        break
                    checked = opener
                append(hit[0])
                hit_values += hit[2]
                pos = end
        while pos + 5 <= size and buf[pos] == 0x44:  # DataRow
            (length,) = unpack(buf, pos + 1)
            end = pos + 1 + length
            if length < 4 or length > limit or end > size:
                break
            if known is None:
                row = open_row(buf, pos + 5, end, plan, tenant)
                if row is None:
                    break
            else:
                body = buf[pos + 5 : end]
                hit = known.get(body)
                if hit is not None and (
                    hit[1] is checked
                    or (
                        (tenant is None or hit[1].tenant == tenant)
                        and crypto.still_cached(hit[1], generation)
                    )
                ):
                    checked = hit[1]
                    append(hit[0])
                    hit_values += hit[2]
                    pos = end
                    continue
                row = open_row(body, 0, len(body), plan, tenant)
                if row is None:
                    break
                message, key, count = row
                if key is not None:
                    enc.opened_rows.add(known, body, (message, key, count))
            append(row[0])
            rows += 1
            values += row[2]
            pos = end
        hits = len(parts) - rows  # one message per row, remembered or opened
        if hits or rows:
            crypto.hits += hit_values
            enc.metrics.values_opened += hit_values + values
            enc.rows_opened += hits + rows
        return parts, pos

    def _data_row_fast(
        self,
        body: bytes,
        fields: tuple[FieldPlan | None, ...],
        known: dict[bytes, OpenedRow] | None = None,
        plan: RowPlan | None = None,
    ) -> bytes | None:
        """The plain case of a whole row at once; None (nothing done) for any other.

        Every field is framed as ``codec.decode_data_row`` does; anything it
        would reject, and every envelope that is not plainly openable, sends the
        row to :meth:`_data_row_by_field`, which raises the precise error.
        """
        if plan is None or plan.fields != fields:
            plan = _shaped(NO_PROTECTED, fields, None)
        open_row = self._open_in_place if plan.binary else self._open_hex
        row = open_row(body, 0, len(body), plan, self.tenant)
        if row is None:
            return None
        self.enc.metrics.values_opened += row[2]
        self.enc.rows_opened += 1
        message, key, count = row
        if known is not None and key is not None:
            self.enc.opened_rows.add(known, body, (message, key, count))
        return message

    def _open_in_place(
        self, buf: bytes, start: int, end: int, plan: RowPlan, tenant: str | None
    ) -> tuple[bytes, DataKey | None, int] | None:
        """The DataRow body at ``buf[start:end]`` with binary envelopes opened, or None.

        The hot path of reads (binary results, asyncpg's): one crypto call
        frames the row, opens every envelope where it lies and leaves the new
        row in pieces, one join makes the message. Returns (message, the one
        key that opened the row or None, values opened).
        """
        parts = [b"D", b""]
        opened = self.enc.crypto.try_open_fields(buf, start, end, plan.openers, parts, tenant)
        if opened is None:
            return None
        parts[1] = _I32.pack(sum(map(len, parts)) + 3)  # the length counts itself, not "D"
        return b"".join(parts), opened[0], opened[1]

    def _open_hex(
        self, buf: bytes, start: int, end: int, plan: RowPlan, tenant: str | None
    ) -> tuple[bytes, DataKey | None, int] | None:
        """:meth:`_open_in_place` for rows with bytea envelopes in hex text format."""
        fields = plan.fields
        assert fields is not None
        if end - start < 2 or (buf[start] << 8 | buf[start + 1]) != len(fields):
            return None
        unpack = _I32.unpack_from
        spans: list[tuple[int, int, FieldPlan]] = []
        names: list[str] = []
        envelopes: list[bytes] = []
        pos = start + 2
        for spec in fields:
            if pos + 4 > end:
                return None
            (length,) = unpack(buf, pos)
            pos += 4
            if length == -1:
                continue  # NULL stays NULL
            stop = pos + length
            if length < 0 or stop > end:
                return None
            if spec is not None:
                if spec.hex:
                    if buf[pos : pos + 4] != b"\\x01":
                        return None
                    try:
                        envelopes.append(binascii.a2b_hex(buf[pos + 2 : stop]))
                    except binascii.Error:
                        return None
                else:
                    envelopes.append(buf[pos:stop])
                names.append(spec.qualified)
                spans.append((pos - 4, stop, spec))
            pos = stop
        if pos != end:
            return None
        result = self.enc.crypto.try_open_row(names, envelopes, tenant)
        if result is None:
            return None
        plaintexts, key = result
        pack = _I32.pack
        parts = [b"D", b""]
        size = end - start
        seg = start
        for (first, stop, spec), plaintext in zip(spans, plaintexts, strict=True):
            if spec.out is not None:
                try:
                    plaintext = spec.out.from_canonical(plaintext, spec.fmt)
                except ValueFormatError:
                    return None
            parts += (buf[seg:first], pack(len(plaintext)), plaintext)
            size += len(plaintext) + first + 4 - stop
            seg = stop
        parts.append(buf[seg:end])
        parts[1] = pack(size + 4)
        return b"".join(parts), key, len(plaintexts)

    def _data_row_by_field(self, body: bytes, state: PortalState, columns: RowColumns) -> bytes:
        """Every case of every field: missing keys, failures, armoured text, migration."""
        if self.foreign_encoding is not None:
            raise self._encoding_refusal(f"column {columns.protected[0][1].qualified}")
        values = codec.decode_data_row(body)
        formats = state.result_formats
        single = formats[0] if len(formats) == 1 else None
        try_open = self.enc.crypto.try_open_cached
        tenant = self.tenant
        missing: set[int] = set()
        opened = 0
        for index, column, value_codec in columns.protected:
            raw = values[index]
            if raw is None:
                continue
            fmt = single if single is not None else (formats[index] if formats else 0)
            # The hot path, inlined: a bytea envelope under a cached key. Anything
            # else (armoured text, a missing key, a failure to report, a migrating
            # plaintext) takes open_value, which knows every case.
            if column.storage == "bytea":
                envelope = raw if fmt == 1 else _hex_envelope(raw)
                if envelope is not None:
                    try:
                        plaintext = try_open(column.qualified, envelope, tenant=tenant)
                    except CryptoError:
                        plaintext = None
                    if plaintext is not None:
                        opened += 1
                        if fmt == 0 or value_codec.logical_type in _TEXT_BINARY_TYPES:
                            values[index] = plaintext  # canonical text is both formats
                        else:
                            values[index] = _encode_out(value_codec, column, plaintext, fmt)
                        continue
            try:
                values[index] = self.open_value(column, raw, fmt, fmt, value_codec)
            except NeedKeys as need:
                missing |= need.key_ids
        self.enc.metrics.values_opened += opened
        if missing:
            raise NeedKeys(key_ids=frozenset(missing))
        self.enc.rows_opened += 1
        return codec.encode_data_row(values)

    def open_value(
        self,
        column: ProtectedColumn,
        raw: bytes,
        server_fmt: int,
        client_fmt: int,
        value_codec: ValueCodec | None = None,
    ) -> bytes:
        """A stored value as Postgres sent it -> the plaintext in ``client_fmt``."""
        value_codec = value_codec or column_codec(column)
        envelope = _envelope_of(column, raw, server_fmt)
        if envelope is None:
            if column.migrating:
                canonical = _plaintext_of(column, raw, server_fmt)
                return _encode_out(value_codec, column, canonical, client_fmt)
            raise refusal(
                f"pgseal: encrypted column {column.qualified} holds a value that is not "
                "a pgseal envelope (written around pgseal?)",
                "run `pgseal audit`; mark the column migrating: true while `pgseal migrate` runs",
                sqlstate="XX001",
            )
        crypto = self.enc.crypto
        tenant = self.tenant
        try:
            plaintext = crypto.try_open_cached(column.qualified, envelope, tenant=tenant)
        except CryptoError as exc:
            self.enc.metrics.open_failures += 1
            raise crypto_refusal(exc) from None
        if plaintext is None:
            key_id = peek_key_id(envelope)
            owner = crypto.cache.destroyed_owner(key_id)
            if owner is not None:
                self.enc.metrics.open_failures += 1
                if tenant is not None and owner != tenant:
                    raise refusal(
                        f"pgseal: a value of {column.qualified} belongs to another "
                        "business than this session's",
                        sqlstate="42501",
                    )
                raise refusal(
                    f"pgseal: a value of {column.qualified} is under a destroyed key "
                    "(the business was shredded) and can never be read",
                    sqlstate="55000",
                )
            if key_id in self.enc.missing_key_ids:
                self.enc.metrics.open_failures += 1
                raise refusal(
                    f"pgseal: a value of {column.qualified} names a key that is not in the "
                    "key store (tampered, or sealed against another key store)",
                    "run `pgseal audit`; check that service_dsn points at the right database",
                    sqlstate="XX001",
                )
            raise NeedKeys(key_ids=frozenset({key_id}))
        self.enc.metrics.values_opened += 1
        return _encode_out(value_codec, column, plaintext, client_fmt)


_OPERATION: Final = re.compile(r"pgseal:? (.{1,60}?) on encrypted ")
_ENVELOPE_TEXT: Final = re.compile(
    rb"\\\\?x01[0-9a-f]{16,}(?:\.\.\.)?|pgseal1:[A-Za-z0-9+/=]{8,}(?:\.\.\.)?"
)


def redact_envelopes(error_body: bytes) -> bytes | None:
    """An ErrorResponse body with envelopes (hex or armoured) replaced, or None.

    Postgres quotes stored values in some errors ("Failing row contains ...");
    the application must see neither plaintext nor ciphertext there.
    """
    if not _ENVELOPE_TEXT.search(error_body):
        return None
    return codec.message(b"E", _ENVELOPE_TEXT.sub(b"(encrypted)", error_body))


# --- helpers ------------------------------------------------------------------------


def _statements_of(plan: Plan) -> tuple[StatementInfo, ...]:
    if isinstance(plan, PassThrough | Rewrite | TenantCommand):
        return plan.statements
    return ()


def _invalid_value(column: ProtectedColumn, exc: ValueFormatError) -> Refused:
    return refusal(
        f"pgseal: invalid value for encrypted column {column.qualified}: {exc}",
        sqlstate=exc.sqlstate,
    )


def _param_cast(stmt: StatementCrypto | None, i: int) -> ValueCast | None:
    """The cast on client parameter ``i`` (0-based) in the statement's plan, if any."""
    plan = stmt.plan if stmt is not None else None
    if isinstance(plan, Rewrite) and i < len(plan.params):
        return plan.params[i].cast
    return None


def _declared(types: Sequence[int], i: int) -> int:
    return types[i] if i < len(types) else 0


#: Declared types whose binary form is their text, read as a text column's own.
_TEXT_LIKE_OIDS: Final = frozenset({19, 705, 1042})  # name, unknown, bpchar


class _UnreadableBinary(ValueCodec):
    """A binary parameter of a type pgseal has no reader for (pgjdbc's setDouble: float8).

    Read as the column's type its bytes would be another value (a float8 1.25 as
    bigint 4608308318706860032), so it is refused instead.
    """

    def __init__(self, declared: int) -> None:
        self.declared = declared

    def to_canonical(self, data: bytes, fmt: int) -> bytes:
        raise UnsupportedValueFormat(
            f"pgseal cannot read a binary value of type OID {self.declared}"
        )


def _binary_reader(declared: int, target: ValueCodec) -> ValueCodec | None:
    """What reads a binary parameter declared ``declared`` first; None: ``target`` itself."""
    if not declared or declared == target.oid:
        return None
    logical = _OID_TO_LOGICAL.get(declared)
    if logical is not None:
        return codec_for(logical)
    if declared in _TEXT_LIKE_OIDS and target.logical_type in _TEXT_BINARY_TYPES:
        return None
    return _UnreadableBinary(declared)


def _stored(column: ProtectedColumn, envelope: bytes) -> bytes:
    """An envelope in the column's physical form (binary format of bytea or text)."""
    if column.storage == "text":
        from crypto.envelope import armor

        return armor(envelope).encode("ascii")
    return envelope


def _bytea_array(elements: Sequence[bytes | None]) -> bytes:
    """A one-dimensional bytea[] in binary format."""
    header = (
        (1).to_bytes(4, "big")  # ndim
        + (1 if any(e is None for e in elements) else 0).to_bytes(4, "big")
        + _BYTEA_ARRAY_HEADER_OID.to_bytes(4, "big")
        + len(elements).to_bytes(4, "big")
        + (1).to_bytes(4, "big", signed=True)
    )
    parts = [header]
    for element in elements:
        if element is None:
            parts.append(b"\xff\xff\xff\xff")
        else:
            parts.append(len(element).to_bytes(4, "big") + element)
    return b"".join(parts)


def _envelope_of(column: ProtectedColumn, raw: bytes, fmt: int) -> bytes | None:
    """The envelope bytes of a stored value as the server sent it, or None."""
    if column.storage == "text":
        if not is_armored(raw):
            return None
        try:
            return dearmor(raw, column.qualified)
        except CryptoError:
            return None
    if fmt == 0:
        if raw[:2] != b"\\x":
            try:  # escape format (bytea_output = escape) -> hex
                raw = codec_for("bytea").to_canonical(raw, 0)
            except ValueFormatError:
                return None  # no bytea text Postgres sends: not an envelope
        try:
            raw = bytes.fromhex(raw[2:].decode("ascii"))
        except (ValueError, UnicodeDecodeError):
            return None
    return raw if is_envelope(raw) else None


def _hex_envelope(raw: bytes) -> bytes | None:
    """A bytea in hex text format (``\\x01...``) -> the envelope bytes, else None."""
    if raw[:4] != b"\\x01":
        return None
    try:
        return bytes.fromhex(raw[2:].decode("ascii"))
    except (ValueError, UnicodeDecodeError):
        return None


def _plaintext_of(column: ProtectedColumn, raw: bytes, fmt: int) -> bytes:
    """A not-yet-migrated value of a ``migrating`` column: its canonical text."""
    if column.storage == "bytea" and fmt == 0 and raw[:2] == b"\\x":
        try:
            return bytes.fromhex(raw[2:].decode("ascii"))
        except (ValueError, UnicodeDecodeError):
            return raw
    return raw


def _encode_out(
    value_codec: ValueCodec, column: ProtectedColumn, canonical: bytes, fmt: int
) -> bytes:
    try:
        return value_codec.from_canonical(canonical, fmt)
    except ValueFormatError as exc:
        raise refusal(
            f"pgseal: a value of {column.qualified} does not read as {column.logical_type}: {exc}",
            sqlstate="XX001",
        ) from None
