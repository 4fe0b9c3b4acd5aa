"""The values a plan is made of: what the proxy must do with a statement.

A plan never holds keys or ciphertext; it says *where* values go and *what* to do
with them when the statement runs. Values that must be sealed or blind-indexed are
**slots**: each slot has a source (a client parameter, an array parameter, or a
literal lifted out of the SQL text), an action (seal for a column, blind-index for
a searchable column) and a tenant source (which business's key to use).

The rewritten SQL is kept as text fragments with a gap for every slot, so that the
proxy can fill the gaps either with added parameters ``$N+1 ...`` (extended
protocol: :attr:`Rewrite.sql_extended`) or with inline ``E'\\\\x..'::bytea`` literals
(simple Query: :meth:`Rewrite.render_simple`). A literal of a protected column
therefore never reaches Postgres: it lives only in the slot, whose ``repr`` hides it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import Enum

from rules.model import ProtectedColumn

__all__ = [
    "BYTEA_ARRAY_OID",
    "BYTEA_OID",
    "LOGICAL_TYPE_OIDS",
    "TEXT_OID",
    "BindAction",
    "BlindIndex",
    "BlindIndexArray",
    "ClientParam",
    "ClientParamArray",
    "CopyInfo",
    "Literal",
    "ParamPlan",
    "PassThrough",
    "Plan",
    "Refuse",
    "Rewrite",
    "Seal",
    "SessionTenant",
    "Slot",
    "SlotAction",
    "SlotSource",
    "StatementInfo",
    "TenantCommand",
    "TenantFromParam",
    "TenantLiteral",
    "TenantSource",
    "TenantValue",
    "ValueCast",
]

BYTEA_OID = 17
TEXT_OID = 25
BYTEA_ARRAY_OID = 1001

#: Postgres type OIDs of the logical types (pg_type.dat; stable since 8.x).
LOGICAL_TYPE_OIDS: dict[str, int] = {
    "text": 25,
    "varchar": 1043,
    "integer": 23,
    "bigint": 20,
    "smallint": 21,
    "numeric": 1700,
    "boolean": 16,
    "date": 1082,
    "timestamp": 1114,
    "timestamptz": 1184,
    "uuid": 2950,
    "jsonb": 3802,
    "bytea": 17,
}


def _check_param_index(index: int) -> None:
    # ``$0`` is no parameter (Postgres: 42P02) and would index the Bind's values
    # from the end: a plan naming it is a planner bug, refused rather than run.
    if index < 1:
        raise ValueError(f"parameter index ${index} is not a parameter")


@dataclass(frozen=True, slots=True)
class ValueCast:
    """A cast written on a value (``$2::text``, ``'12'::integer``) for a protected column.

    ``logical`` is the pgseal logical type of the cast (None: a type pgseal does
    not know, or nested casts), ``modifiers`` the ``n`` of ``varchar(n)`` or the
    ``p, s`` of ``numeric(p, s)``, ``array``
    marks ``type[]``; ``written`` is the type as written, for messages.
    """

    logical: str | None
    written: str
    modifiers: tuple[int, ...] = ()
    array: bool = False

    @property
    def oid(self) -> int:
        """The type OID a parameter cast like this is declared with (0: unknown)."""
        if self.logical is None or self.array:
            return 0
        return LOGICAL_TYPE_OIDS[self.logical]


# --- tenant sources -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TenantFromParam:
    """The tenant is the value of client parameter ``$index`` (1-based)."""

    index: int

    def __post_init__(self) -> None:
        _check_param_index(self.index)


@dataclass(frozen=True, slots=True)
class TenantLiteral:
    """The tenant is written in the statement (or set earlier in the same Query)."""

    value: str


@dataclass(frozen=True, slots=True)
class SessionTenant:
    """The session's tenant; the proxy refuses the statement when there is none."""


TenantSource = TenantFromParam | TenantLiteral | SessionTenant


# --- slot sources and actions ------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ClientParam:
    """The Bind value of client parameter ``$index`` (1-based)."""

    index: int

    def __post_init__(self) -> None:
        _check_param_index(self.index)


@dataclass(frozen=True, slots=True)
class ClientParamArray:
    """An array Bind value of ``$index``; every element is transformed."""

    index: int

    def __post_init__(self) -> None:
        _check_param_index(self.index)


@dataclass(frozen=True, slots=True)
class Literal:
    """A literal lifted out of the SQL text (``None`` for SQL NULL).

    ``may_be_envelope`` is a hint that the text looks like a bytea envelope
    (``\\x01...``); the proxy checks the bytes and then stores them as they are
    instead of sealing twice. The value is never shown in ``repr``.
    """

    text: str | None = field(repr=False)
    may_be_envelope: bool = False


SlotSource = ClientParam | ClientParamArray | Literal


@dataclass(frozen=True, slots=True)
class Seal:
    """Encrypt the value as ``column`` (AAD = its qualified name)."""

    column: ProtectedColumn


@dataclass(frozen=True, slots=True)
class BlindIndex:
    """Blind-index the value for searchable ``column`` (after its ``normalize``)."""

    column: ProtectedColumn


@dataclass(frozen=True, slots=True)
class BlindIndexArray:
    """Blind-index every element of an array value (``col = ANY($n)``)."""

    column: ProtectedColumn


@dataclass(frozen=True, slots=True)
class TenantValue:
    """The tenant the statement's writes to ``column`` are sealed for, as text.

    Added to an UPDATE that takes its tenant from the session (its WHERE names
    none): ``AND tenant_column = <this>`` keeps it from sealing another
    business's rows under this session's key. Sent untyped and in text format,
    so Postgres reads it as the tenant column's own type.
    """

    column: ProtectedColumn


SlotAction = Seal | BlindIndex | BlindIndexArray | TenantValue


@dataclass(frozen=True, slots=True)
class Slot:
    """One value pgseal computes at execution time and places in the SQL."""

    source: SlotSource
    action: SlotAction
    tenant: TenantSource

    @property
    def type_oid(self) -> int:
        """The type to declare for this slot's added parameter in Parse."""
        if isinstance(self.action, TenantValue):
            return 0  # unspecified: Postgres infers the tenant column's type
        if isinstance(self.action, BlindIndexArray):
            return BYTEA_ARRAY_OID
        if isinstance(self.action, Seal) and self.action.column.storage == "text":
            return TEXT_OID
        return BYTEA_OID


# --- client parameters -------------------------------------------------------------


class BindAction(Enum):
    PASS = "pass"  # forward the client's value unchanged
    SEAL = "seal"  # replace the value by its envelope (column, tenant below)
    REPLACE_WITH_NULL = "null"  # not referenced by the rewritten SQL any more


@dataclass(frozen=True, slots=True)
class ParamPlan:
    """What to do with client parameter ``$index`` at Parse, Describe and Bind."""

    index: int
    action: BindAction
    column: ProtectedColumn | None = None  # for SEAL, and the column a value feeds
    tenant: TenantSource | None = None  # for SEAL
    #: Type OID to declare in Parse; None = keep what the client declared.
    parse_oid: int | None = None
    #: OID to report in ParameterDescription; None = report what Postgres says.
    logical_oid: int | None = None
    #: The cast written on the parameter's protected uses (``$k::type``): its
    #: value is read as that type and converted to the column's (rules.casts).
    cast: ValueCast | None = None

    def __post_init__(self) -> None:
        _check_param_index(self.index)


# --- statement facts ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TenantCommand:
    """``SET [SESSION|LOCAL] pgseal.tenant ...`` / ``RESET``; still sent to Postgres.

    ``value`` None means "back to the connection's default" (the startup option
    ``-c pgseal.tenant=X`` if one was given, else no tenant): ``RESET``,
    ``SET ... TO DEFAULT``, ``RESET ALL``, ``DISCARD ALL``.
    """

    value: str | None
    local: bool = False
    statements: tuple[StatementInfo, ...] = ()


@dataclass(frozen=True, slots=True)
class CopyInfo:
    """A COPY on a protected table, for the proxy's stream transform.

    ``columns`` is the column list as written (None = all columns in table order,
    which the proxy takes from its catalog map); for ``COPY (query) TO`` it is the
    query's output names and ``outputs`` says which of them are protected.
    """

    table: str | None  # schema.table, None for COPY (query)
    direction: str  # "from" (into the table) or "to"
    format: str  # "text", "csv" or "binary"
    columns: tuple[str, ...] | None
    outputs: tuple[ProtectedColumn | None, ...] | None = None
    #: FROM: pgseal appended the tenant column (last, after the blind indexes)
    #: because the client's column list lacks it; rows get the session's tenant.
    appended_tenant: bool = False


@dataclass(frozen=True, slots=True)
class StatementInfo:
    """What one statement of the Query does, for the session's bookkeeping."""

    text: str = field(repr=False)  # may hold literals of protected columns
    operation: str  # first keyword: SELECT, INSERT, UPDATE, DELETE, COPY, SET, ...
    reads: frozenset[str] = frozenset()  # protected tables (schema.table) read
    writes: frozenset[str] = frozenset()  # protected tables written
    is_ddl: bool = False  # DDL naming a configured table: refresh the catalog map
    tenant_command: TenantCommand | None = None
    copy: CopyInfo | None = None

    @property
    def tables(self) -> frozenset[str]:
        return self.reads | self.writes


# --- plans -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PassThrough:
    """Forward the original bytes unchanged."""

    statements: tuple[StatementInfo, ...] = ()


@dataclass(frozen=True, slots=True)
class Refuse:
    """Answer with an ErrorResponse; nothing reaches Postgres."""

    message: str
    hint: str | None = None
    sqlstate: str = "0A000"


@dataclass(frozen=True, slots=True)
class Rewrite:
    """Send other SQL, with values computed at execution time.

    ``fragments`` has one more element than ``slots``: the SQL is
    ``fragments[0] + gap(slot 0) + fragments[1] + ...``.
    """

    fragments: tuple[str, ...]
    slots: tuple[Slot, ...]
    client_param_count: int
    params: tuple[ParamPlan, ...]
    statements: tuple[StatementInfo, ...]
    #: Some client parameter has a cast (ParamPlan.cast): Bind looks them up.
    has_casts: bool = field(init=False, default=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "has_casts", any(p.cast is not None for p in self.params))

    @property
    def sql_extended(self) -> str:
        """The SQL for Parse: slot ``i`` becomes ``$(client_param_count + i + 1)``."""
        out = [self.fragments[0]]
        for i, frag in enumerate(self.fragments[1:]):
            out.append(f"${self.client_param_count + i + 1}")
            out.append(frag)
        return "".join(out)

    @property
    def formats_added(self) -> tuple[int, ...]:
        """Bind format codes of the added parameters (tenant values are text)."""
        return tuple(0 if isinstance(slot.action, TenantValue) else 1 for slot in self.slots)

    @property
    def parse_oids_added(self) -> tuple[int, ...]:
        """Parse type OIDs of the added parameters, in order."""
        return tuple(slot.type_oid for slot in self.slots)

    def parse_oids(self, client_declared: Sequence[int]) -> tuple[int, ...]:
        """All Parse type OIDs: the client's (adjusted per ParamPlan) then the slots'."""
        oids: list[int] = []
        for p in self.params:
            declared = client_declared[p.index - 1] if p.index <= len(client_declared) else 0
            oids.append(declared if p.parse_oid is None else p.parse_oid)
        return (*oids, *self.parse_oids_added)

    def render_simple(self, values: Sequence[bytes | None]) -> str:
        """The SQL for a simple Query, with each slot's computed value inline.

        >>> from rules.model import ProtectedColumn
        >>> col = ProtectedColumn("public", "t", "c", "text")
        >>> plan = Rewrite(("SELECT ", ""), (Slot(Literal("x"), Seal(col), SessionTenant()),),
        ...                0, (), ())
        >>> plan.render_simple([b"\\x01\\xff"])
        "SELECT E'\\\\\\\\x01ff'::bytea"
        """
        if len(values) != len(self.slots):
            raise ValueError(f"expected {len(self.slots)} slot values, got {len(values)}")
        out = [self.fragments[0]]
        for slot, value, frag in zip(self.slots, values, self.fragments[1:], strict=True):
            out.append(_sql_value(slot, value))
            out.append(frag)
        return "".join(out)


def _sql_value(slot: Slot, value: bytes | None) -> str:
    if value is None:
        return "NULL"
    if isinstance(slot.action, TenantValue):  # an untyped literal, like the parameter
        return _escape_string(value.decode())
    if slot.type_oid == TEXT_OID:
        # Armoured envelopes are ASCII; quote defensively all the same.
        return _escape_string(value.decode("ascii")) + "::text"
    if slot.type_oid == BYTEA_ARRAY_OID:
        raise ValueError("array slots only exist in the extended protocol")
    return "E'\\\\x" + value.hex() + "'::bytea"


def _escape_string(text: str) -> str:
    """An E'...' literal: it means the same whatever the session's
    standard_conforming_strings (with it off, '\\x01' would be the byte 0x01)."""
    return "E'" + text.replace("\\", "\\\\").replace("'", "''") + "'"


Plan = PassThrough | Refuse | Rewrite | TenantCommand
