"""Statement shapes that mean a plain one, turned into it before analysis.

SQLAlchemy's ORM inserts many rows with server-generated keys as

    INSERT INTO t (a, b) SELECT p0::INTEGER, p1::VARCHAR
    FROM (VALUES ($1::INTEGER, $2::VARCHAR, 0), ($3::INTEGER, $4::VARCHAR, 1))
        AS imp_sen(p0, p1, sen_counter)
    ORDER BY sen_counter RETURNING t.id, t.id AS id__1

("insertmanyvalues" with a sentinel counter, so the generated keys follow the
parameter order). Literally it is an INSERT ... SELECT, which pgseal refuses on
encrypted columns; it means ``INSERT INTO t (a, b) VALUES (...), (...)`` with the
rows in counter order, which Postgres inserts (and numbers) in that order too.

Django (5.2+) bulk-creates on PostgreSQL with

    INSERT INTO t (a, b) SELECT * FROM UNNEST(('{1,2}')::integer[], ('{x,y}')::text[])

With client-side binding (its default) each array is a literal, which means the
rows ``VALUES ('1'::integer, 'x'::text), ('2'::integer, 'y'::text)``. Arrays sent
as parameters (server-side binding) cannot be split before Bind: that form stays
an INSERT ... SELECT. Only these exact shapes are rewritten; anything else is left
for the analyser.
"""

from __future__ import annotations

from sqlglot import exp

from rules.analysis import ident, strip_parens

__all__ = ["sentinel_insert_as_values", "unnest_insert_as_values"]

# Select arguments that must be absent for the SELECT to be a plain row source.
_SELECT_EXTRAS = (
    "distinct",
    "joins",
    "where",
    "group",
    "having",
    "qualify",
    "windows",
    "limit",
    "offset",
    "with",
    "laterals",
    "into",
    "locks",
    "kind",
)


def sentinel_insert_as_values(tree: exp.Expr) -> exp.Expr:
    """``INSERT ... SELECT cols FROM (VALUES ...) AS v(...) [ORDER BY counter]`` as
    ``INSERT ... VALUES`` (see the module docstring); any other tree as it is.

    >>> import sqlglot
    >>> tree = sqlglot.parse_one(
    ...     "INSERT INTO t (a, b) SELECT p0::INT, p1 FROM (VALUES ($1::INT, 'x', 1),"
    ...     " ($2, 'y', 0)) AS v(p0, p1, n) ORDER BY n RETURNING t.id", read="postgres")
    >>> sentinel_insert_as_values(tree).sql("postgres")
    "INSERT INTO t (a, b) VALUES (CAST($2 AS INT), 'y'), (CAST($1 AS INT), 'x') RETURNING t.id"
    """
    if not isinstance(tree, exp.Insert) or not isinstance(tree.this, exp.Schema):
        return tree
    select = tree.expression
    if not isinstance(select, exp.Select) or any(select.args.get(a) for a in _SELECT_EXTRAS):
        return tree
    source = select.args.get("from_") or select.args.get("from")
    values = source.this if isinstance(source, exp.From) else None
    alias = values.args.get("alias") if isinstance(values, exp.Values) else None
    if not isinstance(values, exp.Values) or not isinstance(alias, exp.TableAlias):
        return tree
    names = [ident(c) for c in alias.columns]
    picks = [_pick(item, ident(alias.this), names) for item in select.expressions]
    if len(picks) != len(tree.this.expressions) or any(p is None for p in picks):
        return tree
    rows = [r for r in values.expressions if isinstance(r, exp.Tuple)]
    if len(rows) != len(values.expressions) or any(len(r.expressions) != len(names) for r in rows):
        return tree
    order = _counter_order(select, ident(alias.this), names, rows)
    if order is None:
        return tree
    new_rows: list[exp.Expr] = []
    for row in order:
        items: list[exp.Expr] = []
        for pick in picks:
            assert pick is not None
            position, cast = pick
            item = _cast_value(row.expressions[position], cast)
            if item is None:
                return tree
            items.append(item)
        new_rows.append(exp.Tuple(expressions=items))
    out = tree.copy()
    out.set("expression", exp.Values(expressions=new_rows))
    return out


def _pick(item: exp.Expr, alias: str, names: list[str]) -> tuple[int, exp.DataType | None] | None:
    """A select item ``p`` or ``p::type`` naming a VALUES column: (position, type)."""
    cast: exp.DataType | None = None
    node = strip_parens(item)
    if isinstance(node, exp.Cast):
        to = node.args.get("to")
        if not isinstance(to, exp.DataType):
            return None
        cast, node = to, strip_parens(node.this)
    if not isinstance(node, exp.Column) or ident(node.args.get("table")) not in ("", alias):
        return None
    name = ident(node.this)
    if names.count(name) != 1:
        return None
    return names.index(name), cast


def _counter_order(
    select: exp.Select, alias: str, names: list[str], rows: list[exp.Tuple]
) -> list[exp.Tuple] | None:
    """The rows in ``ORDER BY counter`` order (integer literals, ascending)."""
    order = select.args.get("order")
    if order is None:
        return rows
    terms = order.expressions
    if len(terms) != 1 or not isinstance(terms[0], exp.Ordered) or terms[0].args.get("desc"):
        return None
    picked = _pick(terms[0].this, alias, names)
    if picked is None or picked[1] is not None:
        return None
    keys: list[int] = []
    for row in rows:
        key = row.expressions[picked[0]]
        if not isinstance(key, exp.Literal) or key.is_string or not key.this.isdigit():
            return None
        keys.append(int(key.this))
    return [row for _, row in sorted(zip(keys, rows, strict=True), key=lambda kr: kr[0])]


def _cast_value(value: exp.Expr, cast: exp.DataType | None) -> exp.Expr | None:
    """``value`` under the select item's cast: kept when it already has that cast."""
    if cast is None:
        return value.copy()
    if isinstance(value, exp.Cast):
        return value.copy() if value.args.get("to") == cast else None
    return exp.Cast(this=value.copy(), to=cast.copy())


def unnest_insert_as_values(tree: exp.Expr) -> exp.Expr:
    """``INSERT ... SELECT * FROM UNNEST('{...}'::type[], ...)`` of array literals as
    ``INSERT ... VALUES`` (see the module docstring); any other tree as it is.

    >>> import sqlglot
    >>> tree = sqlglot.parse_one(
    ...     "INSERT INTO t (a, b) SELECT * FROM UNNEST(('{1,2}'::int4[])::integer[],"
    ...     " ('{x,\\"y z\\"}')::text[])", read="postgres")
    >>> print(unnest_insert_as_values(tree).sql("postgres").replace("), (", "),\\n("))
    INSERT INTO t (a, b) VALUES (CAST('1' AS INT), CAST('x' AS TEXT)),
    (CAST('2' AS INT), CAST('y z' AS TEXT))
    """
    if not isinstance(tree, exp.Insert) or not isinstance(tree.this, exp.Schema):
        return tree
    select = tree.expression
    if not isinstance(select, exp.Select) or any(select.args.get(a) for a in _SELECT_EXTRAS):
        return tree
    if select.args.get("order") or [type(e) for e in select.expressions] != [exp.Star]:
        return tree
    source = select.args.get("from_") or select.args.get("from")
    unnest = source.this if isinstance(source, exp.From) else None
    if not isinstance(unnest, exp.Unnest) or unnest.args.get("alias") or unnest.args.get("offset"):
        return tree
    columns: list[tuple[list[str | None], exp.DataType]] = []
    for argument in unnest.expressions:
        column = _array_literal(argument)
        if column is None:
            return tree
        columns.append(column)
    if len(columns) != len(tree.this.expressions):
        return tree
    rows: list[exp.Expr] = []
    for i in range(max((len(elements) for elements, _ in columns), default=0)):
        items: list[exp.Expr] = []
        for elements, element_type in columns:
            value = elements[i] if i < len(elements) else None
            items.append(
                exp.Null()
                if value is None
                else exp.Cast(this=exp.Literal.string(value), to=element_type.copy())
            )
        rows.append(exp.Tuple(expressions=items))
    if not rows:
        return tree
    out = tree.copy()
    out.set("expression", exp.Values(expressions=rows))
    return out


def _array_literal(node: exp.Expr) -> tuple[list[str | None], exp.DataType] | None:
    """``('{...}')::type[]`` (also ``('{...}'::type[])::type[]``): its elements and type."""
    node = strip_parens(node)
    if not isinstance(node, exp.Cast):
        return None
    element_type = _element_type(node.args.get("to"))
    inner = strip_parens(node.this)
    if isinstance(inner, exp.Cast):
        if _element_type(inner.args.get("to")) != element_type:
            return None
        inner = strip_parens(inner.this)
    # E'...' (psycopg's quoting of text with backslashes) parses as a ByteString
    string = isinstance(inner, exp.ByteString) or (
        isinstance(inner, exp.Literal) and inner.is_string
    )
    if element_type is None or not string:
        return None
    elements = parse_array_text(str(inner.this))
    return None if elements is None else (elements, element_type)


def _element_type(to: object) -> exp.DataType | None:
    if not isinstance(to, exp.DataType) or to.this != exp.DataType.Type.ARRAY:
        return None
    inner = to.expressions
    if len(inner) != 1 or not isinstance(inner[0], exp.DataType) or inner[0].is_type("array"):
        return None
    return inner[0]


def parse_array_text(text: str) -> list[str | None] | None:
    r"""The elements of a one-dimensional array in Postgres's text form, else None.

    >>> parse_array_text('{a, "b,\\"c\\\\" ,NULL,"NULL", x y }')
    ['a', 'b,"c\\', None, 'NULL', 'x y']
    >>> parse_array_text("{}"), parse_array_text("{{1}}"), parse_array_text("[1:1]={1}")
    ([], None, None)
    """
    body = text.strip()
    if len(body) < 2 or body[0] != "{" or body[-1] != "}":
        return None
    out: list[str | None] = []
    pos, end = 1, len(body) - 1
    if body[pos:end].strip() == "":
        return out
    while True:
        while pos < end and body[pos].isspace():
            pos += 1
        chars: list[str] = []
        quoted = pos < end and body[pos] == '"'
        if quoted:
            pos += 1
            while pos < end and body[pos] != '"':
                if body[pos] == "\\":
                    pos += 1
                if pos >= end:
                    return None
                chars.append(body[pos])
                pos += 1
            if pos >= end:
                return None
            pos += 1
            while pos < end and body[pos].isspace():
                pos += 1
            out.append("".join(chars))
        else:
            while pos < end and body[pos] != ",":
                if body[pos] in '{}"\\':
                    return None  # nested (multi-dimensional), escaped or malformed
                chars.append(body[pos])
                pos += 1
            element = "".join(chars).strip()
            if element == "":
                return None
            out.append(None if element.upper() == "NULL" else element)
        if pos == end:
            return out
        if body[pos] != ",":
            return None
        pos += 1
