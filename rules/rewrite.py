"""Rewrite steps: pure transforms of a parsed statement, applied in order.

Each step takes the statement tree (already checked by ``rules.analysis``) and a
:class:`RewriteContext` holding the findings, and returns the tree. A value that
pgseal computes at execution time is put in the tree as a *slot marker* (a bare
``Var`` whose name is a sentinel that does not occur in the original text); after
generation the SQL is cut at the markers into fragments (see
``rules.plan_types.Rewrite``). The order of :data:`REWRITES` matters: blind-index
writes read the original values before ``seal_values`` replaces them.

Client parameters: a parameter whose only uses feed one protected column for one
tenant is sealed in place at Bind (its cast dropped, declared bytea); any other
protected use of a parameter gets a slot that reads the client's value, and the
parameter itself stays (PASS) or, when no longer referenced, is sent as NULL.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlglot import exp

from rules.analysis import (
    DefaultValue,
    Findings,
    LiteralValue,
    NullValue,
    ParamRef,
    PlanRefused,
    ValueRef,
    looks_like_envelope,
)
from rules.casts import (
    CastRefused,
    check_assignment,
    check_comparison,
    check_null_assignment,
    convert_value,
)
from rules.model import ProtectedColumn
from rules.pgtypes import ValueFormatError
from rules.plan_types import (
    BYTEA_OID,
    LOGICAL_TYPE_OIDS,
    TEXT_OID,
    BindAction,
    BlindIndex,
    BlindIndexArray,
    ClientParam,
    ClientParamArray,
    Literal,
    ParamPlan,
    Seal,
    Slot,
    SlotAction,
    SlotSource,
    TenantSource,
    TenantValue,
    ValueCast,
)

__all__ = ["REWRITES", "RewriteContext", "RewriteResult", "apply_rewrites", "make_identifier"]

_SAFE_IDENT = re.compile(r"[a-z_][a-z0-9_$]*")


def make_identifier(name: str) -> exp.Identifier:
    """An identifier for a configured name, quoted when Postgres would fold it."""
    return exp.Identifier(this=name, quoted=_SAFE_IDENT.fullmatch(name) is None)


@dataclass(slots=True)
class RewriteContext:
    findings: Findings
    marker: str
    inplace: dict[int, tuple[ProtectedColumn, TenantSource]] = field(default_factory=dict)
    slots: list[Slot] = field(default_factory=list)
    # False while the only edits are parameters sealed in place as they stand:
    # then the original text is sent unchanged.
    changed: bool = False

    def slot(self, source: SlotSource, action: SlotAction, tenant: TenantSource) -> exp.Expr:
        self.slots.append(Slot(source, action, tenant))
        return exp.Var(this=f"{self.marker}{len(self.slots) - 1}_")

    def value(self, ref: ValueRef, action: SlotAction, tenant: TenantSource) -> exp.Expr:
        """The expression that replaces a written or compared value."""
        if isinstance(ref, NullValue):
            return exp.Null()
        if isinstance(ref, DefaultValue):
            return exp.Var(this="DEFAULT")
        if isinstance(ref, ParamRef):
            return self.slot(ClientParam(ref.index), action, tenant)
        if looks_like_envelope(ref.text):  # stored as it is, whatever its cast
            return self.slot(Literal(ref.text, True), action, tenant)
        if ref.cast is None or _read_by_session(action.column, ref):
            return self.slot(Literal(ref.text), action, tenant)
        return self.slot(Literal(_converted_literal(action.column, ref)), action, tenant)


def _read_by_session(column: ProtectedColumn, ref: LiteralValue) -> bool:
    """A ``'...'::timestamptz`` literal for a timestamptz column is read with the
    session's rules (an offset required unless its TimeZone is UTC), not here."""
    assert ref.cast is not None
    return (
        ref.cast.logical == "timestamptz"
        and column.logical_type == "timestamptz"
        and not ref.cast.modifiers
    )


def _converted_literal(column: ProtectedColumn, ref: LiteralValue) -> str:
    """A cast literal as the column's canonical text (the cast was checked)."""
    assert ref.cast is not None
    try:
        return convert_value(column, ref.cast, ref.text.encode(), 0).decode()
    except ValueFormatError as exc:
        raise PlanRefused(
            f"pgseal: invalid value for encrypted column {column.qualified}: {exc}",
            sqlstate=exc.sqlstate,
        ) from None


def check_casts(findings: Findings) -> dict[int, ValueCast]:
    """Refuse casts Postgres or pgseal cannot apply; the cast of each cast parameter."""
    casts: dict[int, set[ValueCast | None]] = {}
    try:
        for vsite in findings.values:
            ref = vsite.value
            if isinstance(ref, NullValue) and ref.cast is not None:
                check_null_assignment(vsite.column, ref.cast)
            elif isinstance(ref, ParamRef | LiteralValue) and ref.cast is not None:
                check_assignment(vsite.column, ref.cast)
            if isinstance(ref, ParamRef):
                casts.setdefault(ref.index, set()).add(ref.cast)
        for ssite in findings.searches:
            for _, ref in ssite.values:
                if isinstance(ref, ParamRef | LiteralValue | NullValue) and ref.cast is not None:
                    check_comparison(ssite.column, ref.cast, array=ssite.kind == "any")
                if isinstance(ref, ParamRef) and ssite.kind != "any":
                    casts.setdefault(ref.index, set()).add(ref.cast)
    except CastRefused as refusal:
        raise PlanRefused(refusal.message, refusal.hint, refusal.sqlstate) from None
    out: dict[int, ValueCast] = {}
    for index, found in casts.items():
        if len(found) > 1:
            raise PlanRefused(
                f"pgseal: inconsistent types deduced for parameter ${index}",
                f"cast every use of ${index} the same way",
                sqlstate="42P08",
            )
        (cast,) = found
        if cast is not None:
            out[index] = cast
    return out


Step = Callable[[exp.Expr, RewriteContext], exp.Expr]


def add_blind_index_writes(tree: exp.Expr, ctx: RewriteContext) -> exp.Expr:
    """Write ``col_bidx`` next to every written searchable ``col``."""
    for site in ctx.findings.blind_writes:
        ctx.changed = True
        bidx = site.column.searchable
        assert bidx is not None
        action = BlindIndex(site.column)
        container = site.container
        if isinstance(container, exp.Schema):
            container.set("expressions", [*container.expressions, make_identifier(bidx)])
            for ref, tenant, node in site.values:
                assert node is not None
                row = node.parent
                assert isinstance(row, exp.Tuple)
                row.set("expressions", [*row.expressions, ctx.value(ref, action, tenant)])
            continue
        if site.excluded:
            rhs: exp.Expr = exp.Column(
                this=make_identifier(bidx), table=exp.to_identifier("excluded")
            )
        else:
            ref, tenant, _ = site.values[0]
            rhs = ctx.value(ref, action, tenant)
        assign = exp.EQ(this=exp.Column(this=make_identifier(bidx)), expression=rhs)
        container.set("expressions", [*container.expressions, assign])
    return tree


def add_tenant_column(tree: exp.Expr, ctx: RewriteContext) -> exp.Expr:
    """An INSERT sealing for the session's tenant also writes that tenant's id."""
    for write in ctx.findings.tenant_writes:
        ctx.changed = True
        write.schema.set(
            "expressions", [*write.schema.expressions, make_identifier(write.tenant_column)]
        )
        for row, tenant in write.rows:
            value = ctx.slot(Literal(None), TenantValue(write.column), tenant)
            row.set("expressions", [*row.expressions, value])
    return tree


def seal_values(tree: exp.Expr, ctx: RewriteContext) -> exp.Expr:
    """Replace every value written into a protected column by its sealed form."""
    for site in ctx.findings.values:
        ref = site.value
        if isinstance(ref, ParamRef) and ref.index in ctx.inplace:
            if isinstance(site.node, exp.Parameter):
                continue
            new: exp.Expr = exp.Parameter(this=exp.Literal.number(ref.index))
        elif isinstance(ref, DefaultValue) and isinstance(site.node, exp.Var | exp.Column):
            continue
        else:
            new = ctx.value(ref, Seal(site.column), site.tenant)
        ctx.changed = True
        site.node.replace(new)
    return tree


def search_by_blind_index(tree: exp.Expr, ctx: RewriteContext) -> exp.Expr:
    """``col = v`` / ``IN`` / ``= ANY($n)`` on a searchable column -> its blind index."""
    for site in ctx.findings.searches:
        ctx.changed = True
        bidx = site.column.searchable
        assert bidx is not None
        site.column_node.set("this", make_identifier(bidx))
        for node, ref in site.values:
            if site.kind == "any":
                assert isinstance(ref, ParamRef)
                new = ctx.slot(
                    ClientParamArray(ref.index), BlindIndexArray(site.column), site.tenant
                )
            else:
                new = ctx.value(ref, BlindIndex(site.column), site.tenant)
            node.replace(new)
    return tree


def guard_conflict_tenant(tree: exp.Expr, ctx: RewriteContext) -> exp.Expr:
    """ON CONFLICT DO UPDATE of sealed values only touches a row of the same tenant."""
    for guard in ctx.findings.guards:
        ctx.changed = True
        cond: exp.Expr = exp.EQ(
            this=exp.Column(
                this=make_identifier(guard.tenant_column), table=exp.to_identifier(guard.target)
            ),
            expression=exp.Column(
                this=make_identifier(guard.tenant_column), table=exp.to_identifier("excluded")
            ),
        )
        where = guard.conflict.args.get("where")
        if isinstance(where, exp.Where):
            cond = exp.And(this=exp.Paren(this=where.this), expression=cond)
        guard.conflict.set("where", exp.Where(this=cond))
    return tree


def guard_update_tenant(tree: exp.Expr, ctx: RewriteContext) -> exp.Expr:
    """An UPDATE sealing for the session's tenant only touches that tenant's rows.

    Its WHERE names no tenant, so without ``AND tenant_column = <tenant>`` it
    would seal other businesses' rows under this session's key.
    """
    for guard in ctx.findings.update_guards:
        ctx.changed = True
        cond: exp.Expr = exp.EQ(
            this=exp.Column(
                this=make_identifier(guard.tenant_column), table=exp.to_identifier(guard.target)
            ),
            expression=ctx.slot(Literal(None), TenantValue(guard.column), guard.tenant),
        )
        where = guard.update.args.get("where")
        if isinstance(where, exp.Where):
            cond = exp.And(this=exp.Paren(this=where.this), expression=cond)
        guard.update.set("where", exp.Where(this=cond))
    return tree


#: The rewrite steps, in the order they must run.
REWRITES: tuple[Step, ...] = (
    add_blind_index_writes,
    add_tenant_column,
    seal_values,
    search_by_blind_index,
    guard_conflict_tenant,
    guard_update_tenant,
)


@dataclass(frozen=True, slots=True)
class RewriteResult:
    fragments: tuple[str, ...]
    slots: tuple[Slot, ...]
    params: tuple[ParamPlan, ...]
    client_param_count: int


def _param_index(node: exp.Parameter) -> int | None:
    inner = node.this
    if isinstance(inner, exp.Literal) and not inner.is_string and str(inner.this).isdigit():
        return int(inner.this) or None  # $0 is no parameter; Postgres refuses it (42P02)
    return None


def _params_in(node: exp.Expr) -> list[int]:
    found: list[int] = []
    nodes = [node] if isinstance(node, exp.Parameter) else []
    nodes.extend(node.find_all(exp.Parameter))
    for p in nodes:
        assert isinstance(p, exp.Parameter)
        index = _param_index(p)
        if index is not None:
            found.append(index)
    return found


def _described_oid(column: ProtectedColumn, cast: ValueCast | None) -> int | None:
    """The type a parameter is described as: its cast's, else its column's."""
    if cast is not None:
        return cast.oid
    return LOGICAL_TYPE_OIDS.get(column.logical_type)


def apply_rewrites(
    tree: exp.Expr, findings: Findings, original: str, declared_param_count: int
) -> RewriteResult:
    """Run :data:`REWRITES` on ``tree`` (mutated) and cut the SQL at the slots."""
    casts = check_casts(findings)
    all_params = _params_in(tree)
    count = max([declared_param_count, *all_params])

    # Which parameters have plain uses (outside values pgseal replaces)?
    replaced_ids: set[int] = set()
    protected_uses: dict[int, ProtectedColumn] = {}
    for vsite in findings.values:
        replaced_ids.update(id(n) for n in [vsite.node, *vsite.node.find_all(exp.Parameter)])
        if isinstance(vsite.value, ParamRef):
            protected_uses.setdefault(vsite.value.index, vsite.column)
    for ssite in findings.searches:
        for node, ref in ssite.values:
            replaced_ids.update(id(n) for n in [node, *node.find_all(exp.Parameter)])
            if isinstance(ref, ParamRef):
                protected_uses.setdefault(ref.index, ssite.column)
    plain: set[int] = set()
    for p in tree.find_all(exp.Parameter):
        if id(p) not in replaced_ids:
            index = _param_index(p)
            if index is not None:
                plain.add(index)

    seal_uses: dict[int, set[tuple[ProtectedColumn, TenantSource]]] = {}
    for vsite in findings.values:
        if isinstance(vsite.value, ParamRef):
            seal_uses.setdefault(vsite.value.index, set()).add((vsite.column, vsite.tenant))
    inplace = {
        k: next(iter(uses)) for k, uses in seal_uses.items() if len(uses) == 1 and k not in plain
    }

    marker = "pgseal_slot_"
    while marker in original:
        marker += "x"
    ctx = RewriteContext(findings, marker, inplace)
    for step in REWRITES:
        tree = step(tree, ctx)

    sql = tree.sql(dialect="postgres") if ctx.changed else original
    pieces = re.split(re.escape(marker) + r"(\d+)_", sql)
    fragments = tuple(pieces[0::2])
    order = [int(i) for i in pieces[1::2]]
    if sorted(order) != list(range(len(ctx.slots))):
        # Defensive: a slot lost or duplicated by generation must never pass silently.
        raise PlanRefused("pgseal: internal error while rewriting this statement")
    slots = tuple(ctx.slots[i] for i in order)

    referenced = set(_params_in(tree))
    params: list[ParamPlan] = []
    for k in range(1, count + 1):
        if k in inplace:
            col, tenant = inplace[k]
            params.append(
                ParamPlan(
                    k,
                    BindAction.SEAL,
                    col,
                    tenant,
                    parse_oid=TEXT_OID if col.storage == "text" else BYTEA_OID,
                    logical_oid=_described_oid(col, casts.get(k)),
                    cast=casts.get(k),
                )
            )
        elif k in referenced:
            params.append(ParamPlan(k, BindAction.PASS, cast=casts.get(k)))
        elif k in protected_uses:
            col = protected_uses[k]
            params.append(
                ParamPlan(
                    k,
                    BindAction.REPLACE_WITH_NULL,
                    col,
                    parse_oid=TEXT_OID,
                    logical_oid=_described_oid(col, casts.get(k)),
                    cast=casts.get(k),
                )
            )
        else:
            params.append(ParamPlan(k, BindAction.PASS))
    return RewriteResult(fragments, slots, tuple(params), count)
