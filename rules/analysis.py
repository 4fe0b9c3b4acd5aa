"""Column resolution and refusal checks over one parsed statement (sqlglot, Postgres).

The analyser walks a statement scope by scope (CTEs, FROM sources, subqueries,
set operations, DML targets), resolves every column reference to the protected
column it may denote, and decides for each use whether it can be done on
ciphertext. It fails closed:

* an unqualified column that *could* belong to a protected table in scope (or in
  an enclosing scope) is treated as that protected column;
* a qualified column whose qualifier names no known source is not protected (it
  cannot be one of ours: Postgres would reject it);
* a use that is not explicitly allowed raises :class:`PlanRefused` naming the
  operation and the column (never a literal value).

Allowed uses: the bare column as a projection or RETURNING item (aliased or
not, also through ``*``, subqueries, CTEs and ``UNION ALL``), ``IS [NOT] NULL``,
``count(col)``; equality, ``<>``, ``IN (...)`` and ``= ANY($n)`` against values
on a *searchable* column in WHERE or JOIN ON (recorded as :class:`SearchSite`);
and writes of literals, parameters, NULL and DEFAULT (recorded as
:class:`ValueSite` / :class:`BlindWriteSite`). The rewrite steps in
``rules.rewrite`` act on these findings; the analysis itself never changes the tree.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator
from dataclasses import dataclass, field

from sqlglot import exp

from crypto.envelope import ARMOR_PREFIX
from rules.casts import value_cast
from rules.model import ProtectedColumn, ProtectedTable, Rules
from rules.plan_types import (
    SessionTenant,
    TenantFromParam,
    TenantLiteral,
    TenantSource,
    ValueCast,
)

__all__ = [
    "BlindWriteSite",
    "ConflictGuard",
    "DefaultValue",
    "Findings",
    "LiteralValue",
    "NullValue",
    "ParamRef",
    "PlanRefused",
    "SearchSite",
    "TenantWrite",
    "UpdateGuard",
    "ValueRef",
    "ValueSite",
    "analyze",
    "ident",
    "value_of",
]


class PlanRefused(Exception):
    """The statement cannot run safely on ciphertext; becomes a refusal (0A000, or
    42501 for a write whose business cannot be told, as the proxy answers it).

    The message names operations, tables and columns only, never literal values.
    """

    def __init__(self, message: str, hint: str | None = None, sqlstate: str = "0A000") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.sqlstate = sqlstate


def refuse_column(operation: str, column: ProtectedColumn, hint: str | None = None) -> PlanRefused:
    return PlanRefused(
        f"pgseal: {operation} on encrypted column {column.qualified} is not supported", hint
    )


def refuse_table(operation: str, table: ProtectedTable, hint: str | None = None) -> PlanRefused:
    return PlanRefused(
        f"pgseal: {operation} on encrypted table {table.qualified} is not supported", hint
    )


def cannot_tell_tenant(column: ProtectedColumn) -> PlanRefused:
    return PlanRefused(
        f"pgseal: cannot tell which business owns this write to {column.qualified}",
        "write the tenant column as a literal or parameter, or SET pgseal.tenant",
        sqlstate="42501",  # as when the proxy finds no tenant at Bind time
    )


# --- values -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ParamRef:
    index: int
    cast: ValueCast | None = None  # ``$k::type``: the value's type (rules.casts)


@dataclass(frozen=True, slots=True)
class LiteralValue:
    text: str = field(repr=False)
    cast: ValueCast | None = None  # ``'12'::integer``


@dataclass(frozen=True, slots=True)
class NullValue:
    cast: ValueCast | None = None  # ``NULL::integer``: still typed, as in Postgres


@dataclass(frozen=True, slots=True)
class DefaultValue:
    pass


ValueRef = ParamRef | LiteralValue | NullValue | DefaultValue


def strip_parens(node: exp.Expr) -> exp.Expr:
    while isinstance(node, exp.Paren):
        node = node.this
    return node


def value_of(node: exp.Expr) -> ValueRef | None:
    """A constant or parameter, else None; a cast on it is kept as ``cast``.

    >>> import sqlglot
    >>> value_of(sqlglot.parse_one("$2", read="postgres"))
    ParamRef(index=2, cast=None)
    >>> value_of(sqlglot.parse_one("$2::varchar", read="postgres")).cast.logical
    'varchar'
    >>> value_of(sqlglot.parse_one("-1.5", read="postgres")) == LiteralValue("-1.5")
    True
    """
    cast = value_cast(node)
    ref = _bare_value_of(node)
    if cast is None or not isinstance(ref, ParamRef | LiteralValue | NullValue):
        return ref  # DEFAULT keeps its meaning
    return dataclasses.replace(ref, cast=cast)


def _bare_value_of(node: exp.Expr) -> ValueRef | None:
    node = strip_parens(node)
    while isinstance(node, exp.Cast):
        node = strip_parens(node.this)
    if isinstance(node, exp.Parameter):
        inner = node.this
        # $0 is no parameter (Postgres: 42P02); as a ParamRef it would be index -1.
        if isinstance(inner, exp.Literal) and not inner.is_string and inner.this.isdigit():
            return ParamRef(int(inner.this)) if int(inner.this) > 0 else None
        return None
    if isinstance(node, exp.Null):
        return NullValue()
    if isinstance(node, exp.Boolean):
        return LiteralValue("true" if node.this else "false")
    if isinstance(node, exp.Literal | exp.RawString | exp.ByteString):
        return LiteralValue(str(node.this))
    if isinstance(node, exp.Neg):
        inner = strip_parens(node.this)
        if isinstance(inner, exp.Literal) and not inner.is_string:
            return LiteralValue("-" + str(inner.this))
        return None
    if isinstance(node, exp.Var) and node.name.upper() == "DEFAULT":
        return DefaultValue()
    if (
        isinstance(node, exp.Column)
        and not node.table
        and isinstance(node.this, exp.Identifier)
        and not node.this.quoted
        and node.name.upper() == "DEFAULT"
    ):
        return DefaultValue()
    return None


def tenant_of(ref: ValueRef | None) -> TenantSource | None:
    if isinstance(ref, ParamRef):
        return TenantFromParam(ref.index)
    if isinstance(ref, LiteralValue):
        return TenantLiteral(ref.text)
    return None


def ident(node: exp.Expr | str | None) -> str:
    """Postgres identifier folding: unquoted names are lower-cased."""
    if node is None:
        return ""
    if isinstance(node, str):
        return node.lower()
    if isinstance(node, exp.Identifier):
        return str(node.this) if node.quoted else str(node.this).lower()
    return node.name.lower()


def is_excluded(node: exp.Expr, name: str) -> bool:
    """``node`` is ``EXCLUDED.<name>``: ON CONFLICT DO UPDATE keeping the inserted value."""
    node = strip_parens(node)
    return (
        isinstance(node, exp.Column)
        and ident(node.table) == "excluded"
        and ident(node.this) == name
    )


_ENVELOPE_HEX = re.compile(r"\\x01[0-9a-fA-F]{72,}")


def looks_like_envelope(text: str) -> bool:
    """bytea hex of a v1 envelope, or its armoured text form (the proxy checks bytes)."""
    return text.startswith(ARMOR_PREFIX) or _ENVELOPE_HEX.fullmatch(text) is not None


# --- findings ---------------------------------------------------------------------


@dataclass(slots=True)
class ValueSite:
    """``node`` is a value written into protected ``column`` for ``tenant``."""

    node: exp.Expr
    value: ValueRef
    column: ProtectedColumn
    tenant: TenantSource


@dataclass(slots=True)
class BlindWriteSite:
    """A write of a searchable column: its blind-index column must be written too.

    ``container`` is the INSERT's column-list Schema (``values`` the row values
    for the column, in row order) or the SET list owner (Update / OnConflict) with
    one value; ``excluded`` marks ``SET col = EXCLUDED.col``.
    """

    container: exp.Expr
    column: ProtectedColumn
    values: list[tuple[ValueRef, TenantSource, exp.Expr | None]]
    excluded: bool = False


@dataclass(slots=True)
class SearchSite:
    """``column_node`` (searchable) compared with values; becomes a blind-index test."""

    column_node: exp.Column
    column: ProtectedColumn
    kind: str  # "eq" (= / <> / IN) or "any" (= ANY($n))
    values: list[tuple[exp.Expr, ValueRef]]
    tenant: TenantSource


@dataclass(slots=True)
class ConflictGuard:
    """ON CONFLICT DO UPDATE of protected columns: only update same-tenant rows."""

    conflict: exp.OnConflict
    target: str  # alias or table name of the INSERT target
    tenant_column: str


@dataclass(slots=True)
class UpdateGuard:
    """An UPDATE sealing for the session's tenant: restrict it to that tenant's rows."""

    update: exp.Update
    target: str  # alias or table name of the UPDATE target
    tenant_column: str
    column: ProtectedColumn  # the first column sealed (named in a refusal)
    tenant: TenantSource  # the session's (or a SET earlier in the same Query)


@dataclass(slots=True)
class TenantWrite:
    """An INSERT sealing for the session's tenant without naming the tenant column:
    the column is added, each row's value its tenant, so the row and its envelopes
    agree on the business."""

    schema: exp.Schema
    tenant_column: str
    column: ProtectedColumn  # the first column sealed (named in a refusal)
    rows: list[tuple[exp.Tuple, TenantSource]]


@dataclass(slots=True)
class Findings:
    reads: set[str] = field(default_factory=set)
    writes: set[str] = field(default_factory=set)
    values: list[ValueSite] = field(default_factory=list)
    blind_writes: list[BlindWriteSite] = field(default_factory=list)
    searches: list[SearchSite] = field(default_factory=list)
    guards: list[ConflictGuard] = field(default_factory=list)
    update_guards: list[UpdateGuard] = field(default_factory=list)
    tenant_writes: list[TenantWrite] = field(default_factory=list)
    # Top-level query outputs (position -> protected column), when computable.
    outputs: tuple[ProtectedColumn | None, ...] | None = None
    output_names: tuple[str, ...] | None = None

    @property
    def needs_rewrite(self) -> bool:
        return bool(
            self.values
            or self.blind_writes
            or self.searches
            or self.guards
            or self.update_guards
            or self.tenant_writes
        )


# --- scopes -----------------------------------------------------------------------


@dataclass(slots=True)
class Outputs:
    """The columns a derived source (subquery, CTE, set operation) exposes."""

    names: dict[str, ProtectedColumn] = field(default_factory=dict)
    star_tables: list[ProtectedTable] = field(default_factory=list)
    positional: list[tuple[str, ProtectedColumn | None]] | None = field(default_factory=list)
    nulls: set[int] = field(default_factory=set)  # positions that are a NULL literal

    def lookup(self, name: str) -> ProtectedColumn | None:
        found = self.names.get(name)
        if found is not None:
            return found
        for table in self.star_tables:
            col = table.column(name)
            if col is not None:
                return col
        return None

    def first_protected(self) -> ProtectedColumn | None:
        if self.names:
            return next(iter(self.names.values()))
        for table in self.star_tables:
            if table.columns:
                return next(iter(table.columns.values()))
        return None

    def renamed(self, names: list[str]) -> Outputs:
        """Apply a column alias list ``AS s(a, b)``."""
        if self.positional is None:
            return self
        out = Outputs(star_tables=list(self.star_tables), positional=[])
        for i, (old, col) in enumerate(self.positional):
            new = names[i] if i < len(names) else old
            assert out.positional is not None
            out.positional.append((new, col))
            if col is not None:
                out.names[new] = col
        return out


@dataclass(slots=True)
class Source:
    alias: str
    table: ProtectedTable | None = None  # a protected base table
    outputs: Outputs | None = None  # a derived source


@dataclass(slots=True)
class Env:
    sources: dict[str, Source]
    parent: Env | None
    ctes: dict[str, Outputs]
    tenants: dict[str, TenantSource] = field(default_factory=dict)


_QUERY = (
    exp.Select,
    exp.SetOperation,
    exp.Subquery,
    exp.Values,
    exp.Insert,
    exp.Update,
    exp.Delete,
)

_RANGE_OPS: dict[type[exp.Expr], str] = {
    exp.LT: "<",
    exp.GT: ">",
    exp.LTE: "<=",
    exp.GTE: ">=",
}
_PATTERN_OPS: dict[type[exp.Expr], str] = {
    exp.Like: "LIKE",
    exp.ILike: "ILIKE",
    exp.SimilarTo: "SIMILAR TO",
    exp.RegexpLike: "regular expression match (~)",
    exp.RegexpILike: "regular expression match (~*)",
}
_ARITHMETIC = (
    exp.Add,
    exp.Sub,
    exp.Mul,
    exp.Div,
    exp.Mod,
    exp.IntDiv,
    exp.Neg,
    exp.Pow,
    exp.BitwiseAnd,
    exp.BitwiseOr,
    exp.BitwiseXor,
    exp.BitwiseNot,
    exp.BitwiseLeftShift,
    exp.BitwiseRightShift,
)
_FUNC_HINT = "decrypted values exist only in the application; compute there"
_EQ_HINT = "mark it searchable in config.yaml (searchable: <blind-index column>) for equality"
_ORDER_HINT = "ciphertext has no order; sort in the application"


def _operation(parent: exp.Expr, node: exp.Expr) -> tuple[str, str | None]:
    """Name the operation a protected value takes part in, for the refusal."""
    if isinstance(parent, exp.Ordered):
        grand = parent.parent
        if isinstance(grand, exp.OnConflict):
            return "ON CONFLICT target", "use a non-encrypted unique key as the conflict target"
        if isinstance(grand, exp.Order) and isinstance(grand.parent, exp.Window):
            return "window function", _FUNC_HINT
        return "ORDER BY", _ORDER_HINT
    if isinstance(parent, exp.Order):
        return "ORDER BY", _ORDER_HINT
    if isinstance(parent, exp.Group):
        return "GROUP BY", "ciphertext of equal values differs; group in the application"
    if isinstance(parent, exp.Distinct) or (
        isinstance(parent, exp.Tuple) and isinstance(parent.parent, exp.Distinct)
    ):
        return "DISTINCT", "ciphertext of equal values differs; deduplicate in the application"
    if isinstance(parent, exp.Window):
        return "window function", _FUNC_HINT
    for kind, sym in _RANGE_OPS.items():
        if isinstance(parent, kind):
            return f"range comparison ({sym})", _ORDER_HINT
    if isinstance(parent, exp.Between):
        return "range comparison (BETWEEN)", _ORDER_HINT
    for kind, name in _PATTERN_OPS.items():
        if isinstance(parent, kind):
            return name, "pattern matching cannot be done on ciphertext"
    if isinstance(parent, exp.DPipe):
        return "concatenation (||)", _FUNC_HINT
    if isinstance(parent, exp.Cast | exp.TryCast):
        return "cast", "select the bare column; pgseal returns it in its logical type"
    if isinstance(parent, _ARITHMETIC):
        return "arithmetic", _FUNC_HINT
    if isinstance(parent, exp.Case | exp.If):
        return "CASE", _FUNC_HINT
    if isinstance(parent, exp.NullSafeEQ | exp.NullSafeNEQ):
        return "IS DISTINCT FROM", _EQ_HINT
    if isinstance(parent, exp.Is):
        return "IS", "only IS [NOT] NULL works on encrypted columns"
    if isinstance(parent, exp.Count):
        return "count(DISTINCT ...)", "only count(col) and count(*) work on encrypted columns"
    if isinstance(parent, exp.AggFunc):
        name = parent.sql_name().lower()
        return f"aggregate {name}()", "only count(col) and count(*) work on encrypted columns"
    if isinstance(parent, exp.Anonymous):
        return f"function {parent.name.lower()}()", _FUNC_HINT
    if isinstance(parent, exp.Coalesce):
        return "COALESCE", _FUNC_HINT
    if isinstance(parent, exp.Func):
        return f"function {parent.sql_name().lower()}()", _FUNC_HINT
    if isinstance(parent, exp.In):
        return "IN", _EQ_HINT
    if isinstance(parent, exp.EQ | exp.NEQ) and isinstance(
        parent.parent, exp.Update | exp.OnConflict
    ):
        return "copying to another column", "write values from the application"
    return "use in an expression", _FUNC_HINT


def _conjuncts(node: exp.Expr | None) -> Iterator[exp.Expr]:
    if node is None:
        return
    node = strip_parens(node)
    if isinstance(node, exp.And):
        yield from _conjuncts(node.this)
        yield from _conjuncts(node.expression)
    else:
        yield node


class Analyzer:
    """One pass over one statement; collects :class:`Findings` or raises PlanRefused."""

    def __init__(self, rules: Rules, default_tenant: TenantSource) -> None:
        self.rules = rules
        self.default_tenant = default_tenant
        self.findings = Findings()
        # Nodes the generic walk must not judge again (SET targets, handled values).
        self.handled: set[int] = set()

    # --- dispatch ---------------------------------------------------------------

    def statement(self, node: exp.Expr) -> None:
        if isinstance(node, exp.Insert | exp.Update | exp.Delete):
            self.dml(node, None, {})
            return
        outputs = self.query(node, None, {})
        if outputs.positional is not None:
            self.findings.output_names = tuple(n for n, _ in outputs.positional)
            self.findings.outputs = tuple(c for _, c in outputs.positional)

    def with_ctes(
        self, node: exp.Expr, parent: Env | None, ctes: dict[str, Outputs]
    ) -> dict[str, Outputs]:
        with_ = node.args.get("with_")
        if not isinstance(with_, exp.With):
            return ctes
        ctes = dict(ctes)
        for cte in with_.expressions:
            name = ident(cte.alias)
            # A recursive CTE sees itself; start from "nothing protected" and redo once.
            body_first = cte.this
            if with_.args.get("recursive") and isinstance(body_first, exp.SetOperation):
                # The recursive term reads the CTE itself: seed it with what the
                # non-recursive term yields (a throw-away pass, findings discarded).
                seed = Analyzer(self.rules, self.default_tenant)
                ctes[name] = seed.query(body_first.this, parent, ctes)
            else:
                ctes.setdefault(name, Outputs(positional=None))
            body = cte.this
            if isinstance(body, exp.Insert | exp.Update | exp.Delete):
                outputs = self.dml(body, parent, ctes)
            else:
                outputs = self.query(body, parent, ctes)
            alias = cte.args.get("alias")
            if isinstance(alias, exp.TableAlias) and alias.columns:
                outputs = outputs.renamed([ident(c) for c in alias.columns])
            ctes[name] = outputs
        return ctes

    def query(self, node: exp.Expr, parent: Env | None, ctes: dict[str, Outputs]) -> Outputs:
        if isinstance(node, exp.Subquery):
            inner = self.query(node.this, parent, ctes)
            self.check_modifiers(node, inner, parent, ctes)
            return inner
        if isinstance(node, exp.Paren):
            return self.query(node.this, parent, ctes)
        if isinstance(node, exp.Select):
            return self.select(node, parent, ctes)
        if isinstance(node, exp.SetOperation):
            return self.set_operation(node, parent, ctes)
        if isinstance(node, exp.Values):
            env = Env({}, parent, ctes)
            for row in node.expressions:
                self.walk(row, env)
            return Outputs(positional=None)
        if isinstance(node, exp.Insert | exp.Update | exp.Delete):
            return self.dml(node, parent, ctes)
        raise PlanRefused(f"pgseal: unsupported query form {type(node).__name__}")

    # --- sources ------------------------------------------------------------------

    def table_of(self, table: exp.Table) -> ProtectedTable | None:
        name = ident(table.this)
        schema = ident(table.args.get("db")) or "public"
        return self.rules.tables.get(f"{schema}.{name}")

    def source(self, node: exp.Expr, parent: Env | None, ctes: dict[str, Outputs]) -> Source:
        alias_node = node.args.get("alias")
        alias = (
            ident(alias_node.this)
            if isinstance(alias_node, exp.TableAlias) and alias_node.this
            else ""
        )
        column_names = (
            [ident(c) for c in alias_node.columns] if isinstance(alias_node, exp.TableAlias) else []
        )
        if isinstance(node, exp.Table):
            if not isinstance(node.this, exp.Identifier):
                # A table function such as generate_series(...): check its arguments
                # (ROWS FROM (...) keeps them in the node's rows, not in ``this``).
                self.walk(node if node.this is None else node.this, Env({}, parent, ctes))
                return Source(alias or node.name.lower())
            name = ident(node.this)
            if not node.args.get("db") and name in ctes:
                outputs = ctes[name]
                if column_names:
                    outputs = outputs.renamed(column_names)
                return Source(alias or name, outputs=outputs)
            table = self.table_of(node)
            if table is not None:
                self.findings.reads.add(table.qualified)
                if column_names:
                    # FROM customers AS c(a, b): positions unknown without the catalog.
                    raise refuse_table(
                        "column aliases", table, "alias the columns in the select list"
                    )
            return Source(alias or name, table=table)
        if isinstance(node, exp.Subquery | exp.Lateral):
            body = node.this
            outputs = self.query(body, parent, ctes)
            if column_names:
                outputs = outputs.renamed(column_names)
            return Source(alias, outputs=outputs)
        if isinstance(node, exp.Values):
            self.query(node, parent, ctes)
            return Source(alias)
        # unnest(...), function scans, etc.: not protected, arguments checked.
        self.walk(node, Env({}, parent, ctes))
        return Source(alias)

    def from_sources(
        self, owner: exp.Expr, parent: Env | None, ctes: dict[str, Outputs], key: str = "from_"
    ) -> tuple[dict[str, Source], list[exp.Join]]:
        sources: dict[str, Source] = {}
        from_ = owner.args.get(key)
        items: list[exp.Expr] = []
        if isinstance(from_, exp.From):
            items.append(from_.this)
            items.extend(from_.expressions or [])
        elif isinstance(from_, list):
            items.extend(from_)
        joins: list[exp.Join] = list(owner.args.get("joins") or [])
        for item in items:
            src = self.source(item, self.lateral_env(item, sources, parent, ctes), ctes)
            sources[src.alias] = src
        for join in joins:
            src = self.source(join.this, self.lateral_env(join.this, sources, parent, ctes), ctes)
            sources[src.alias] = src
        return sources, joins

    def lateral_env(
        self,
        item: exp.Expr,
        sources: dict[str, Source],
        parent: Env | None,
        ctes: dict[str, Outputs],
    ) -> Env | None:
        """A LATERAL item sees the FROM items before it; so does a function in FROM
        (implicitly LATERAL in Postgres: ``FROM t, f(t.col)``)."""
        table_function = (
            isinstance(item, exp.Table) and not isinstance(item.this, exp.Identifier)
        ) or not isinstance(item, exp.Table | exp.Subquery | exp.Values)
        if (
            isinstance(item, exp.Lateral)
            or table_function
            or (isinstance(item, exp.Subquery) and isinstance(item.parent, exp.Lateral))
        ):
            return Env(dict(sources), parent, ctes)
        return parent

    def check_joins(self, joins: list[exp.Join], env: Env) -> None:
        for join in joins:
            on = join.args.get("on")
            if on is not None:
                self.walk(on, env)
            using = join.args.get("using") or []
            for name_node in using:
                name = ident(name_node)
                for src in env.sources.values():
                    col = self._source_column(src, name)
                    if col is not None:
                        raise refuse_column("JOIN USING", col, "join on a non-encrypted key")
            if str(join.args.get("method") or "").upper() == "NATURAL":
                for src in env.sources.values():
                    if src.table is not None and src.table.columns:
                        raise refuse_table("NATURAL JOIN", src.table, "join on a non-encrypted key")

    # --- SELECT -------------------------------------------------------------------

    def select(self, sel: exp.Select, parent: Env | None, ctes: dict[str, Outputs]) -> Outputs:
        ctes = self.with_ctes(sel, parent, ctes)
        sources, joins = self.from_sources(sel, parent, ctes)
        env = Env(sources, parent, ctes)
        env.tenants = self.where_tenants(sel.args.get("where"), env)
        self.check_joins(joins, env)

        outputs = Outputs()
        for proj in sel.expressions:
            self.projection(proj, env, outputs)
        for key, value in sel.args.items():
            if key in ("with_", "from_", "joins", "expressions") or value is None:
                continue
            for item in value if isinstance(value, list) else [value]:
                if isinstance(item, exp.Expr):
                    self.walk(item, env)
        for proj in sel.expressions:
            self.walk(proj, env)

        distinct = sel.args.get("distinct")
        if isinstance(distinct, exp.Distinct) and not distinct.args.get("on"):
            col = outputs.first_protected()
            if col is not None:
                raise refuse_column("DISTINCT", col, _operation(distinct, distinct)[1])
        self.check_output_refs(sel, outputs)
        return outputs

    def projection(self, proj: exp.Expr, env: Env, outputs: Outputs) -> None:
        inner = strip_parens(proj.this) if isinstance(proj, exp.Alias) else proj
        alias_node = proj.args.get("alias") if isinstance(proj, exp.Alias) else None
        name = ident(alias_node) if isinstance(alias_node, exp.Identifier) else ""
        if isinstance(inner, exp.Star) or (
            isinstance(inner, exp.Column) and isinstance(inner.this, exp.Star)
        ):
            qualifier = ident(inner.args.get("table")) if isinstance(inner, exp.Column) else ""
            outputs.positional = None
            for src in self._star_sources(env, qualifier):
                if src.table is not None:
                    outputs.star_tables.append(src.table)
                elif src.outputs is not None:
                    outputs.names.update(src.outputs.names)
                    outputs.star_tables.extend(src.outputs.star_tables)
            return
        col: ProtectedColumn | None = None
        if isinstance(inner, exp.Column):
            name = name or ident(inner.this)
            resolved = self.resolve(inner, env)
            col = resolved[0] if resolved else None
        if col is not None:
            outputs.names[name] = col
        if outputs.positional is not None:
            if isinstance(inner, exp.Null):
                outputs.nulls.add(len(outputs.positional))
            outputs.positional.append((name, col))

    def _star_sources(self, env: Env, qualifier: str) -> list[Source]:
        if not qualifier:
            return list(env.sources.values())
        scope: Env | None = env
        while scope is not None:
            if qualifier in scope.sources:
                return [scope.sources[qualifier]]
            scope = scope.parent
        return []

    def check_output_refs(self, node: exp.Expr, outputs: Outputs) -> None:
        """ORDER BY / GROUP BY naming an output alias or position of a protected column."""
        positional = outputs.positional
        for key, operation in (("order", "ORDER BY"), ("group", "GROUP BY")):
            clause = node.args.get(key)
            if clause is None:
                continue
            for item in clause.expressions:
                target = strip_parens(item.this if isinstance(item, exp.Ordered) else item)
                col: ProtectedColumn | None = None
                if (
                    isinstance(target, exp.Literal)
                    and not target.is_string
                    and target.this.isdigit()
                ):
                    pos = int(target.this) - 1
                    if positional is not None and 0 <= pos < len(positional):
                        col = positional[pos][1]
                    elif positional is None:
                        col = outputs.first_protected()
                elif isinstance(target, exp.Column) and not target.table:
                    col = outputs.names.get(ident(target.this))
                if col is not None:
                    hint = _ORDER_HINT if key == "order" else "group in the application"
                    raise refuse_column(operation, col, hint)

    def set_operation(
        self, node: exp.SetOperation, parent: Env | None, ctes: dict[str, Outputs]
    ) -> Outputs:
        ctes = self.with_ctes(node, parent, ctes)
        left = self.query(node.this, parent, ctes)
        right = self.query(node.expression, parent, ctes)
        distinct = bool(node.args.get("distinct")) or not isinstance(node, exp.Union)
        op = type(node).__name__.upper()
        col = left.first_protected() or right.first_protected()
        if col is not None:
            if distinct:
                raise refuse_column(
                    f"{op} (duplicate elimination)",
                    col,
                    "use separate SELECTs and deduplicate in the application",
                )
            # RowDescription gives no table OID for a set operation's columns, so
            # pgseal could not tell them for encrypted ones: the client would get
            # the envelopes. (Whether the rows reach the client or only a count
            # does, the plan cannot always tell; refusing is the safe side.)
            raise refuse_column(
                "UNION ALL",
                col,
                "Postgres does not report where a UNION's columns come from, so pgseal "
                "cannot decrypt them; run the SELECTs separately",
            )
        merged = Outputs(
            names=dict(left.names),
            star_tables=left.star_tables + right.star_tables,
            positional=None,
        )
        if left.positional is not None and right.positional is not None:
            merged.positional = []
            pairs = zip(left.positional, right.positional, strict=False)
            for i, ((name, lcol), (_, rcol)) in enumerate(pairs):
                if lcol is None and i in left.nulls:
                    lcol = rcol
                elif rcol is None and i in right.nulls:
                    rcol = lcol
                if lcol != rcol:
                    # RowDescription carries no origin for set operations, and one
                    # output column can only be opened as one column.
                    col = lcol or rcol
                    assert col is not None
                    raise refuse_column(
                        f"{op} mixing values", col, "combine rows of the same column only"
                    )
                merged.positional.append((name, lcol))
        for name, col in right.names.items():
            merged.names.setdefault(name, col)
        self.check_modifiers(node, merged, parent, ctes)
        return merged

    def check_modifiers(
        self, node: exp.Expr, outputs: Outputs, parent: Env | None, ctes: dict[str, Outputs]
    ) -> None:
        """ORDER BY / LIMIT attached to a set operation or parenthesised query."""
        self.check_output_refs(node, outputs)
        env = Env({}, parent, ctes)
        for key in ("limit", "offset"):
            value = node.args.get(key)
            if isinstance(value, exp.Expr):
                self.walk(value, env)

    # --- DML ----------------------------------------------------------------------

    def dml(self, node: exp.Expr, parent: Env | None, ctes: dict[str, Outputs]) -> Outputs:
        ctes = self.with_ctes(node, parent, ctes)
        if isinstance(node, exp.Insert):
            return self.insert(node, parent, ctes)
        if isinstance(node, exp.Update):
            return self.update(node, parent, ctes)
        assert isinstance(node, exp.Delete)
        return self.delete(node, parent, ctes)

    def target(self, table: exp.Expr) -> tuple[str, ProtectedTable | None]:
        if not isinstance(table, exp.Table):
            raise PlanRefused(f"pgseal: unsupported DML target {type(table).__name__}")
        alias = table.alias or ""
        table_name = ident(table.this)
        return (ident(alias) if alias else table_name), self.table_of(table)

    def returning(self, node: exp.Expr, env: Env) -> Outputs:
        outputs = Outputs()
        ret = node.args.get("returning")
        if isinstance(ret, exp.Returning):
            for item in ret.expressions:
                self.projection(item, env, outputs)
                self.walk(item, env)
        return outputs

    def insert(self, ins: exp.Insert, parent: Env | None, ctes: dict[str, Outputs]) -> Outputs:
        target = ins.this
        schema = target if isinstance(target, exp.Schema) else None
        table_node = schema.this if schema is not None else target
        alias, table = self.target(table_node)
        source_q = ins.expression
        env_values = Env({}, parent, ctes)
        names = [ident(i) for i in schema.expressions] if schema is not None else None

        if table is None:
            if source_q is not None:
                self.query(source_q, parent, ctes)
            tenv = Env({alias: Source(alias), "excluded": Source("excluded")}, parent, ctes)
            conflict = ins.args.get("conflict")
            if isinstance(conflict, exp.OnConflict):
                self.walk(conflict, tenv)
            return self.returning(ins, tenv)

        self.findings.writes.add(table.qualified)
        if names is None and source_q is not None:
            raise refuse_table(
                "INSERT without a column list",
                table,
                "name the columns: INSERT INTO t (col, ...) VALUES (...)",
            )
        names = names or []
        self.reject_blind_columns(table, names)
        protected = [table.column(n) for n in names]
        row_tenants: list[TenantSource] = []
        first_sealed: ProtectedColumn | None = None
        if isinstance(source_q, exp.Values):
            schema_bw: dict[str, BlindWriteSite] = {}
            for row in source_q.expressions:
                values = row.expressions if isinstance(row, exp.Tuple) else [row]
                if len(values) != len(names):
                    raise refuse_table(
                        "INSERT with a different number of values than columns", table
                    )
                tenant = self.row_tenant(table, names, values)
                row_tenants.append(tenant)
                for name, col, value in zip(names, protected, values, strict=True):
                    if col is None:
                        self.walk(value, env_values)
                        continue
                    ref = value_of(value)
                    if ref is None:
                        raise refuse_column(
                            "INSERT of a computed value", col, "send a literal or a parameter"
                        )
                    self.findings.values.append(ValueSite(value, ref, col, tenant))
                    if first_sealed is None and isinstance(ref, ParamRef | LiteralValue):
                        first_sealed = col
                    if col.searchable:
                        assert schema is not None
                        site = schema_bw.get(name)
                        if site is None:
                            site = BlindWriteSite(schema, col, [])
                            schema_bw[name] = site
                            self.findings.blind_writes.append(site)
                        site.values.append((ref, tenant, value))
            if first_sealed is not None and table.tenant_column not in names:
                assert schema is not None
                rows = [r for r in source_q.expressions if isinstance(r, exp.Tuple)]
                if len(rows) != len(row_tenants):
                    raise refuse_table("INSERT without its tenant column", table)
                self.findings.tenant_writes.append(
                    TenantWrite(
                        schema,
                        table.tenant_column,
                        first_sealed,
                        list(zip(rows, row_tenants, strict=True)),
                    )
                )
        elif source_q is not None:
            self.query(source_q, parent, ctes)
            for col in protected:
                if col is not None:
                    raise refuse_column(
                        "INSERT ... SELECT", col, "insert the values with VALUES (...) or COPY"
                    )

        tenv = Env(
            {alias: Source(alias, table=table), "excluded": Source("excluded", table=table)},
            parent,
            ctes,
        )
        conflict = ins.args.get("conflict")
        if isinstance(conflict, exp.OnConflict):
            self.on_conflict(conflict, table, alias, row_tenants, tenv)
        return self.returning(ins, tenv)

    def reject_blind_columns(self, table: ProtectedTable, names: list[str]) -> None:
        blind = {c.searchable: c for c in table.columns.values() if c.searchable}
        for name in names:
            if name in blind:
                raise refuse_column(
                    f"writing blind-index column {name} directly", blind[name], "pgseal writes it"
                )

    def row_tenant(
        self, table: ProtectedTable, names: list[str], values: list[exp.Expr]
    ) -> TenantSource:
        if table.tenant_column not in names:
            return self.default_tenant
        value = values[names.index(table.tenant_column)]
        ref = value_of(value)
        tenant = tenant_of(ref)
        if tenant is not None:
            return tenant
        if isinstance(ref, DefaultValue):
            return self.default_tenant
        for name, v in zip(names, values, strict=True):
            col = table.column(name)
            if col is not None and not isinstance(value_of(v), NullValue | DefaultValue):
                raise cannot_tell_tenant(col)
        return self.default_tenant

    def on_conflict(
        self,
        conflict: exp.OnConflict,
        table: ProtectedTable,
        alias: str,
        row_tenants: list[TenantSource],
        env: Env,
    ) -> None:
        keys = conflict.args.get("conflict_keys") or []
        key_names: set[str] = set()
        for key in keys:
            for column in key.find_all(exp.Column):
                name = ident(column.this)
                key_names.add(name)
                col = table.column(name)
                if col is not None:
                    raise refuse_column(
                        "ON CONFLICT target",
                        col,
                        "use a non-encrypted unique key as the conflict target",
                    )
        guarded = False  # the update needs the same-tenant guard
        for assign in conflict.expressions:
            if not isinstance(assign, exp.EQ):
                self.walk(assign, env)
                continue
            target = assign.this
            if not isinstance(target, exp.Column):
                self.refuse_multi_assign(target, table)
                self.walk(assign.expression, env)
                continue
            name = ident(target.this)
            if name == table.tenant_column and table.columns:
                # An ORM's upsert sets every column it inserted, the tenant too:
                # under the same-tenant guard, tenant = EXCLUDED.tenant changes nothing.
                if not is_excluded(assign.expression, name):
                    raise refuse_table(
                        f"changing tenant column {name}", table, "a row's business cannot change"
                    )
                guarded = True
                continue
            col = table.column(name)
            if col is None:
                self.walk(assign.expression, env)
                continue
            guarded = True
            if is_excluded(assign.expression, name):
                rhs = strip_parens(assign.expression)
                self.handled.add(id(rhs))
                if col.searchable:
                    self.findings.blind_writes.append(
                        BlindWriteSite(conflict, col, [], excluded=True)
                    )
                continue
            ref = value_of(assign.expression)
            if ref is None:
                raise refuse_column(
                    "ON CONFLICT DO UPDATE SET to an expression",
                    col,
                    "use EXCLUDED.col, a literal, a parameter, NULL or DEFAULT",
                )
            if len(set(row_tenants)) != 1:
                raise cannot_tell_tenant(col)
            tenant = row_tenants[0]
            self.findings.values.append(ValueSite(assign.expression, ref, col, tenant))
            if col.searchable:
                self.findings.blind_writes.append(
                    BlindWriteSite(conflict, col, [(ref, tenant, assign.expression)])
                )
        where = conflict.args.get("where")
        if where is not None:
            self.walk(where, env)
        if guarded and table.tenant_column not in key_names:
            self.findings.guards.append(ConflictGuard(conflict, alias, table.tenant_column))

    def refuse_multi_assign(self, target: exp.Expr, table: ProtectedTable | None) -> None:
        if table is None:
            return
        for column in target.find_all(exp.Column):
            col = table.column(ident(column.this))
            if col is not None or ident(column.this) == table.tenant_column:
                if col is None:
                    raise refuse_table("changing the tenant column", table)
                raise refuse_column("multi-column assignment", col, "assign each column separately")

    def update(self, upd: exp.Update, parent: Env | None, ctes: dict[str, Outputs]) -> Outputs:
        alias, table = self.target(upd.this)
        sources, joins = self.from_sources(upd, parent, ctes)
        sources = {alias: Source(alias, table=table), **sources}
        env = Env(sources, parent, ctes)
        env.tenants = self.where_tenants(upd.args.get("where"), env)
        if table is not None:
            self.findings.writes.add(table.qualified)
            self.findings.reads.add(table.qualified)
        self.check_joins(joins, env)
        if table is not None and table.columns:
            self.tenant_kept(upd, alias, table, env)
        for assign in upd.expressions:
            if not isinstance(assign, exp.EQ):
                self.walk(assign, env)
                continue
            target = assign.this
            if not isinstance(target, exp.Column):
                self.refuse_multi_assign(target, table)
                self.walk(assign.expression, env)
                continue
            name = ident(target.this)
            col = table.column(name) if table is not None else None
            if table is not None:
                if name == table.tenant_column and table.columns:
                    continue  # checked by tenant_kept
                self.reject_blind_columns(table, [name])
            if col is None:
                self.walk(assign.expression, env)
                continue
            ref = value_of(assign.expression)
            if ref is None:
                raise refuse_column(
                    "UPDATE SET to an expression",
                    col,
                    "set it to a literal, a parameter, NULL or DEFAULT",
                )
            tenant = env.tenants.get(alias, self.default_tenant)
            self.findings.values.append(ValueSite(assign.expression, ref, col, tenant))
            if (
                alias not in env.tenants
                and isinstance(ref, ParamRef | LiteralValue)
                and not any(g.update is upd for g in self.findings.update_guards)
            ):
                assert table is not None
                self.findings.update_guards.append(
                    UpdateGuard(upd, alias, table.tenant_column, col, tenant)
                )
            if col.searchable:
                self.findings.blind_writes.append(
                    BlindWriteSite(upd, col, [(ref, tenant, assign.expression)])
                )
        where = upd.args.get("where")
        if where is not None:
            self.walk(where, env)
        return self.returning(upd, env)

    def tenant_kept(self, upd: exp.Update, alias: str, table: ProtectedTable, env: Env) -> None:
        """``SET tenant_column = v`` with encrypted columns (an ORM's save sets every
        column) may only keep the row's business: without the tenant in WHERE, v
        becomes the statement's tenant and a guard ``AND tenant_column = v`` leaves
        rows of other businesses alone. Setting it alone is refused as a move."""
        targets = [a.this for a in upd.expressions if isinstance(a, exp.EQ)]
        sealed = any(isinstance(t, exp.Column) and table.column(ident(t.this)) for t in targets)
        for assign in upd.expressions:
            target = assign.this if isinstance(assign, exp.EQ) else None
            if not isinstance(target, exp.Column) or ident(target.this) != table.tenant_column:
                continue
            tenant = tenant_of(value_of(assign.expression))
            if not sealed or tenant is None or env.tenants.get(alias, tenant) != tenant:
                raise refuse_table(
                    f"changing tenant column {table.tenant_column}",
                    table,
                    "a row's business cannot change",
                )
            if alias not in env.tenants:
                env.tenants[alias] = tenant
                first = next(iter(table.columns.values()))
                self.findings.update_guards.append(
                    UpdateGuard(upd, alias, table.tenant_column, first, tenant)
                )

    def delete(self, node: exp.Delete, parent: Env | None, ctes: dict[str, Outputs]) -> Outputs:
        alias, table = self.target(node.this)
        sources, joins = self.from_sources(node, parent, ctes, key="using")
        sources = {alias: Source(alias, table=table), **sources}
        env = Env(sources, parent, ctes)
        env.tenants = self.where_tenants(node.args.get("where"), env)
        if table is not None:
            self.findings.writes.add(table.qualified)
        self.check_joins(joins, env)
        where = node.args.get("where")
        if where is not None:
            self.walk(where, env)
        return self.returning(node, env)

    def where_tenants(self, where: exp.Expr | None, env: Env) -> dict[str, TenantSource]:
        """``tenant_col = literal|$n`` among WHERE's top-level AND terms, per source."""
        tenants: dict[str, TenantSource] = {}
        if where is None:
            return tenants
        for term in _conjuncts(where.this if isinstance(where, exp.Where) else where):
            if not isinstance(term, exp.EQ):
                continue
            for column, other in ((term.this, term.expression), (term.expression, term.this)):
                column = strip_parens(column)
                if not isinstance(column, exp.Column):
                    continue
                tenant = tenant_of(value_of(other))
                if tenant is None:
                    continue
                name = ident(column.this)
                qualifier = ident(column.args.get("table"))
                for alias, src in env.sources.items():
                    if src.table is None or src.table.tenant_column != name:
                        continue
                    if qualifier and qualifier != alias:
                        continue
                    tenants[alias] = tenant
        return tenants

    # --- expressions --------------------------------------------------------------

    def walk(self, root: exp.Expr, env: Env) -> None:
        """Judge every column use in ``root``'s own scope; recurse into subqueries."""
        stack: list[exp.Expr] = [root]
        while stack:
            node = stack.pop()
            if id(node) in self.handled:
                continue
            if isinstance(node, _QUERY):
                self.nested_query(node, env)
                continue
            if isinstance(node, exp.Column):
                if not isinstance(node.this, exp.Star):
                    self.column_use(node, env)
                elif not isinstance(node.parent, exp.Select | exp.Returning):
                    # ``c.*`` inside an expression (to_jsonb(c.*)), not a select list
                    self.star_in_expression(node, env)
                continue
            stack.extend(node.iter_expressions())

    def nested_query(self, node: exp.Expr, env: Env) -> None:
        outputs = self.query(node, env, env.ctes)
        col = outputs.first_protected()
        if col is None:
            return
        holder = node.parent
        while isinstance(holder, exp.Paren):
            holder = holder.parent
        if isinstance(holder, exp.Exists):
            return
        operation = (
            "IN (subquery)" if isinstance(holder, exp.In) else "subquery result in an expression"
        )
        raise refuse_column(
            operation, col, "select the bare column from the table or a FROM subquery"
        )

    def _source_column(self, src: Source, name: str) -> ProtectedColumn | None:
        if src.table is not None:
            return src.table.column(name)
        if src.outputs is not None:
            return src.outputs.lookup(name)
        return None

    def resolve(self, column: exp.Column, env: Env) -> tuple[ProtectedColumn, Source, Env] | None:
        name = ident(column.this)
        qualifier = ident(column.args.get("table"))
        scope: Env | None = env
        while scope is not None:
            if qualifier:
                src = scope.sources.get(qualifier)
                if src is not None:
                    col = self._source_column(src, name)
                    return (col, src, scope) if col is not None else None
            else:
                for src in scope.sources.values():
                    col = self._source_column(src, name)
                    if col is not None:
                        return col, src, scope
            scope = scope.parent
        return None

    def column_use(self, column: exp.Column, env: Env) -> None:
        resolved = self.resolve(column, env)
        if resolved is None:
            self.whole_row(column, env)
            return
        col, src, scope = resolved
        node: exp.Expr = column
        parent = node.parent
        while isinstance(parent, exp.Paren):
            node, parent = parent, parent.parent
        if parent is None:
            return
        if isinstance(parent, exp.Select) and node.arg_key == "expressions":
            return
        if (
            isinstance(parent, exp.Alias)
            and isinstance(parent.parent, exp.Select | exp.Returning)
            and parent.arg_key == "expressions"
        ):
            return
        if isinstance(parent, exp.Returning):
            return
        if (
            isinstance(parent, exp.Is)
            and isinstance(parent.expression, exp.Null)
            and node.arg_key == "this"
        ):
            return
        if isinstance(parent, exp.Count) and node.arg_key == "this":
            return
        if isinstance(parent, exp.EQ | exp.NEQ) and not isinstance(
            parent.parent, exp.Update | exp.OnConflict
        ):
            self.comparison(parent, node, column, col, src, scope)
            return
        if isinstance(parent, exp.In) and node.arg_key == "this":
            self.in_list(parent, column, col, src, scope)
            return
        operation, hint = _operation(parent, node)
        raise refuse_column(operation, col, hint)

    def star_in_expression(self, column: exp.Column, env: Env) -> None:
        """``to_jsonb(c.*)``, ``ROW(c.*)``: the row's envelopes would leave as values."""
        for src in self._star_sources(env, ident(column.args.get("table"))):
            table = src.table
            if table is not None and table.columns:
                raise refuse_table("a whole-row reference", table, "select the columns by name")
            outputs = src.outputs
            protected = outputs.first_protected() if outputs is not None else None
            if protected is not None:
                raise refuse_column(
                    "a whole-row reference", protected, "select the columns by name"
                )

    def whole_row(self, column: exp.Column, env: Env) -> None:
        """``SELECT c FROM customers c`` / ``to_json(c)``: a row value holding ciphertext."""
        if column.args.get("table"):
            return
        name = ident(column.this)
        scope: Env | None = env
        while scope is not None:
            src = scope.sources.get(name)
            if src is not None:
                if src.table is not None and src.table.columns:
                    raise refuse_table(
                        "a whole-row reference", src.table, "select the columns by name"
                    )
                return
            scope = scope.parent

    def filter_context(self, node: exp.Expr) -> bool:
        """Is ``node`` a term of a WHERE or JOIN ON condition (through AND/OR/NOT)?"""
        parent = node.parent
        while isinstance(parent, exp.And | exp.Or | exp.Not | exp.Paren):
            node, parent = parent, parent.parent
        if isinstance(parent, exp.Where):
            return isinstance(parent.parent, exp.Select | exp.Update | exp.Delete)
        return isinstance(parent, exp.Join) and node.arg_key == "on"

    def search_checks(self, cmp: exp.Expr, op: str, col: ProtectedColumn, src: Source) -> None:
        if not self.filter_context(cmp):
            raise refuse_column(f"comparison ({op}) outside WHERE", col, "compare in WHERE")
        if not col.searchable:
            raise refuse_column(f"equality ({op})", col, _EQ_HINT)
        if src.table is None:
            raise refuse_column(
                f"equality ({op}) through a subquery or CTE",
                col,
                "filter on the table itself inside the subquery",
            )

    def comparison(
        self,
        cmp: exp.Expr,
        node: exp.Expr,
        column: exp.Column,
        col: ProtectedColumn,
        src: Source,
        scope: Env,
    ) -> None:
        op = "=" if isinstance(cmp, exp.EQ) else "<>"
        other_node = cmp.expression if node.arg_key == "this" else cmp.this
        other = strip_parens(other_node)
        if isinstance(other, exp.Any | exp.All):
            inner = strip_parens(other.this)
            if isinstance(other, exp.Any) and op == "=" and isinstance(inner, exp.Array):
                # = ANY(ARRAY[v, ...]) (psycopg2 renders a list so) is IN (v, ...)
                self.value_list(
                    cmp, "= ANY(ARRAY[...])", inner.expressions, column, col, src, scope
                )
                return
            ref = value_of(inner)
            if not isinstance(ref, ParamRef) or isinstance(other, exp.All) or op != "=":
                raise refuse_column(
                    f"{op} {type(other).__name__.upper()}(...)",
                    col,
                    "use = ANY($n) with an array parameter",
                )
            self.search_checks(cmp, op, col, src)
            self.findings.searches.append(
                SearchSite(
                    column,
                    col,
                    "any",
                    [(inner, ref)],
                    scope.tenants.get(src.alias, self.default_tenant),
                )
            )
            self.handled.add(id(other))
            return
        ref = value_of(other)
        if ref is None or isinstance(ref, DefaultValue):
            if any(True for _ in other.find_all(exp.Column)):
                in_join = isinstance(cmp.parent, exp.Join) or (self._in_join_on(cmp))
                operation = "JOIN ON" if in_join else f"comparison ({op}) with another column"
                raise refuse_column(operation, col, "join or compare on a non-encrypted key")
            raise refuse_column(
                f"comparison ({op}) with an expression", col, "compare with a literal or parameter"
            )
        self.search_checks(cmp, op, col, src)
        self.findings.searches.append(
            SearchSite(
                column, col, "eq", [(other, ref)], scope.tenants.get(src.alias, self.default_tenant)
            )
        )
        self.handled.add(id(other))

    def _in_join_on(self, node: exp.Expr) -> bool:
        parent = node.parent
        while isinstance(parent, exp.And | exp.Or | exp.Not | exp.Paren):
            node, parent = parent, parent.parent
        return isinstance(parent, exp.Join)

    def in_list(
        self, cmp: exp.In, column: exp.Column, col: ProtectedColumn, src: Source, scope: Env
    ) -> None:
        if cmp.args.get("query") is not None or cmp.args.get("unnest") is not None:
            raise refuse_column("IN (subquery)", col, "use IN with values or = ANY($n)")
        self.value_list(cmp, "IN", cmp.expressions, column, col, src, scope)

    def value_list(
        self,
        cmp: exp.Expr,
        op: str,  # "IN" or "= ANY(ARRAY[...])"
        items: list[exp.Expr],
        column: exp.Column,
        col: ProtectedColumn,
        src: Source,
        scope: Env,
    ) -> None:
        """``col IN (v, ...)`` or ``col = ANY(ARRAY[v, ...])``: each value searched."""
        values: list[tuple[exp.Expr, ValueRef]] = []
        for item in items:
            ref = value_of(item)
            if ref is None or isinstance(ref, DefaultValue):
                raise refuse_column(
                    f"{op} with an expression", col, "use IN with literals or parameters"
                )
            values.append((item, ref))
        self.search_checks(cmp, "IN" if op == "IN" else "=", col, src)
        self.findings.searches.append(
            SearchSite(column, col, "eq", values, scope.tenants.get(src.alias, self.default_tenant))
        )
        for item, _ in values:
            self.handled.add(id(item))


def analyze(tree: exp.Expr, rules: Rules, default_tenant: TenantSource | None = None) -> Findings:
    """Resolve and check one statement; raise :class:`PlanRefused` if it must not run."""
    analyzer = Analyzer(rules, default_tenant or SessionTenant())
    analyzer.statement(tree)
    return analyzer.findings
