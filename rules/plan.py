"""Plan one SQL string: pass it through, refuse it, or rewrite it.

``plan_statement`` is the planner's single entry point; it is pure (no sockets,
no keys) and its result is immutable, so the proxy caches it by SQL text
(``rules.plan_cache``). The steps:

1. **Prefilter** (``rules.prefilter``): text naming no configured table (and no
   ``pgseal`` setting) is passed through without parsing.
2. **Split** the simple-Query string into statements with their exact spans.
3. **Classify** each statement by its leading keywords. Statements sqlglot would
   regenerate wrongly or only as opaque commands (transaction control, SET/SHOW,
   LISTEN/NOTIFY, PREPARE/EXECUTE/DEALLOCATE, DO, DISCARD, DDL, ...) are never
   regenerated: they pass through byte for byte, or are refused when they would
   let plaintext reach or leave a protected table behind pgseal's back (PREPARE /
   EXPLAIN / DECLARE of a statement that needs a rewrite, DO blocks, views,
   functions and CREATE ... AS over a protected table). ``COPY`` is read at the
   text level (sqlglot's COPY grammar is incomplete).
4. **Analyse** DML with sqlglot (``rules.analysis``): refusals raise, the rest is
   recorded as findings; no findings means the original text is kept.
5. **Rewrite** (``rules.rewrite``): only statements with findings are
   regenerated; the others keep their original text inside the new string.

A refusal of any statement refuses the whole string. Refusal messages name the
operation and the column, never a literal value.
"""

from __future__ import annotations

import re

import sqlglot
from sqlglot import exp
from sqlglot.errors import SqlglotError

from rules.analysis import Findings, PlanRefused, analyze, ident, refuse_table
from rules.model import ProtectedColumn, ProtectedTable, Rules
from rules.normalize import sentinel_insert_as_values, unnest_insert_as_values
from rules.plan_types import (
    BYTEA_ARRAY_OID,
    BYTEA_OID,
    LOGICAL_TYPE_OIDS,
    TEXT_OID,
    BindAction,
    BlindIndex,
    BlindIndexArray,
    ClientParam,
    ClientParamArray,
    CopyInfo,
    Literal,
    ParamPlan,
    PassThrough,
    Plan,
    Refuse,
    Rewrite,
    Seal,
    SessionTenant,
    Slot,
    SlotAction,
    SlotSource,
    StatementInfo,
    TenantCommand,
    TenantFromParam,
    TenantLiteral,
    TenantSource,
    TenantValue,
)
from rules.prefilter import (
    Prefilter,
    leading_words,
    space_parameters,
    split_statements,
    strip_comments,
)
from rules.rewrite import apply_rewrites, make_identifier

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
    "plan_statement",
    "prefilter_for",
]

# Statements that are forwarded as they are, whatever tables they name: they move
# no column values between the client and a table.
_OPAQUE = frozenset(
    {
        "BEGIN", "START", "COMMIT", "END", "ROLLBACK", "ABORT", "SAVEPOINT", "RELEASE",
        "CHECKPOINT", "LISTEN", "NOTIFY", "UNLISTEN", "DEALLOCATE", "EXECUTE", "SHOW",
        "LOCK", "FETCH", "MOVE", "CLOSE", "VACUUM", "ANALYZE", "ANALYSE", "LOAD",
        "REINDEX", "CLUSTER", "REFRESH", "TRUNCATE", "SET", "RESET", "DISCARD",
        "COMMENT", "GRANT", "REVOKE", "SECURITY", "CALL",
    }
)  # fmt: skip
_DDL = frozenset({"CREATE", "ALTER", "DROP"})
_DML = frozenset({"SELECT", "INSERT", "UPDATE", "DELETE", "WITH", "VALUES", "TABLE"})
# Objects whose body could read or write a protected table behind pgseal's back.
_CODE_OBJECTS = frozenset({"VIEW", "RULE", "FUNCTION", "PROCEDURE", "TRIGGER", "MATERIALIZED"})
_CREATE_AS = re.compile(r"\bAS\s*\(?\s*(?:SELECT|WITH|TABLE|VALUES|EXECUTE)\b", re.IGNORECASE)
# The name a CREATE TEMPORARY TABLE creates (schema pg_temp at most).
_CREATE_TEMP_TABLE = re.compile(
    r"\s*CREATE\s+(?:GLOBAL\s+|LOCAL\s+)?TEMP(?:ORARY)?\s+TABLE\s+(?:IF\s+NOT\s+EXISTS\s+)?"
    r'(?:(?:"pg_temp"|pg_temp)\s*\.\s*)?("(?:[^"]|"")+"|[\w$]+)',
    re.IGNORECASE,
)
_SET_CONFIG_TENANT = re.compile(r"set_config\s*\(\s*'pgseal\.tenant'", re.IGNORECASE)

_TENANT_SET = re.compile(
    r"""\s*SET\s+(?:(?P<scope>SESSION|LOCAL)\s+)?pgseal\.tenant\s*(?:=|\bTO\b)\s*
        (?P<value>'(?:[^']|'')*'|[A-Za-z0-9_.+-]+)\s*$""",
    re.IGNORECASE | re.VERBOSE | re.DOTALL,
)
_TENANT_NAMED = re.compile(r"\bpgseal\s*\.\s*tenant\b", re.IGNORECASE)
_RESET_ALL = re.compile(r"\s*(?:RESET\s+ALL|DISCARD\s+ALL)\s*$", re.IGNORECASE)

_PREFILTERS: dict[int, tuple[Rules, Prefilter]] = {}


def prefilter_for(rules: Rules) -> Prefilter:
    """The compiled prefilter for ``rules`` (memoised per Rules object)."""
    entry = _PREFILTERS.get(id(rules))
    if entry is not None and entry[0] is rules:
        return entry[1]
    prefilter = Prefilter(rules.table_names)
    if len(_PREFILTERS) >= 16:
        _PREFILTERS.clear()
    _PREFILTERS[id(rules)] = (rules, prefilter)
    return prefilter


def plan_statement(sql: str, rules: Rules, declared_param_count: int = 0) -> Plan:
    """Plan one Query/Parse text; see the module docstring.

    ``declared_param_count`` is the number of parameter types the client declared
    in Parse (0 for a simple Query); the client's parameter count N is the larger
    of it and the highest ``$k`` in the text, and added parameters start at N+1.
    """
    prefilter = prefilter_for(rules)
    if not prefilter.may_concern(sql):
        return PassThrough()
    try:
        return _plan(sql, rules, prefilter, declared_param_count)
    except PlanRefused as refusal:
        return Refuse(refusal.message, refusal.hint, refusal.sqlstate)
    except (AttributeError, TypeError, ValueError, KeyError, IndexError, AssertionError):
        # A tree shape the analyser does not expect (sqlglot parses some rare
        # syntax into unusual nodes). The text names a protected table, so the
        # safe answer is a refusal, not a dropped connection or a guess.
        tables = _StatementPlanner(rules, prefilter).named_tables(sql)
        where = f"; it touches encrypted table {tables[0].qualified}" if tables else ""
        return Refuse(
            f"pgseal could not analyse this statement{where}",
            "simplify the statement, or run it without pgseal",
        )


def _plan(sql: str, rules: Rules, prefilter: Prefilter, declared_param_count: int) -> Plan:
    spans = split_statements(sql)
    planner = _StatementPlanner(rules, prefilter)
    infos: list[StatementInfo] = []
    pieces: list[tuple[int, int, _Rewritten]] = []
    for span in spans:
        info, rewritten = planner.plan(span.text, declared_param_count)
        infos.append(info)
        if rewritten is not None:
            # Keep the whitespace around a regenerated statement as it was.
            lead = len(span.text) - len(span.text.lstrip())
            trail = len(span.text) - len(span.text.rstrip())
            pieces.append((span.start + lead, span.end - trail, rewritten))
        command = info.tenant_command
        if command is not None:
            planner.session_changed(command)
    statements = tuple(infos)
    if not pieces:
        if len(statements) == 1 and statements[0].tenant_command is not None:
            command = statements[0].tenant_command
            return TenantCommand(command.value, command.local, statements)
        return PassThrough(statements)

    fragments: list[str] = []
    slots: list[Slot] = []
    params: tuple[ParamPlan, ...] = ()
    count = declared_param_count
    cursor = 0
    current = ""
    for start, end, rewritten in pieces:
        current += sql[cursor:start] + rewritten.fragments[0]
        for slot, frag in zip(rewritten.slots, rewritten.fragments[1:], strict=True):
            fragments.append(current)
            slots.append(slot)
            current = frag
        cursor = end
        params = rewritten.params
        count = rewritten.client_param_count
    fragments.append(current + sql[cursor:])
    if len(pieces) > 1 and any(p[2].params for p in pieces):
        raise PlanRefused("pgseal: parameters in a multi-statement string are not supported")
    return Rewrite(tuple(fragments), tuple(slots), count, params, statements)


class _Rewritten:
    __slots__ = ("client_param_count", "fragments", "params", "slots")

    def __init__(
        self,
        fragments: tuple[str, ...],
        slots: tuple[Slot, ...],
        params: tuple[ParamPlan, ...],
        client_param_count: int,
    ) -> None:
        self.fragments = fragments
        self.slots = slots
        self.params = params
        self.client_param_count = client_param_count


def _unquote_tenant(value: str) -> str | None:
    if value.startswith("'"):
        return value[1:-1].replace("''", "'")
    if value.upper() == "DEFAULT":
        return None
    return value


class _StatementPlanner:
    """Plans the statements of one string in order (tenant commands carry over)."""

    def __init__(self, rules: Rules, prefilter: Prefilter) -> None:
        self.rules = rules
        self.prefilter = prefilter
        self.tenant: TenantSource = SessionTenant()
        self.tenant_reset = False

    def session_changed(self, command: TenantCommand) -> None:
        # Later statements of the same string run under the tenant set here; a
        # RESET falls back to a startup value only the session knows.
        if command.value is not None:
            self.tenant = TenantLiteral(command.value)
            self.tenant_reset = False
        else:
            self.tenant = SessionTenant()
            self.tenant_reset = True

    # --- classification -------------------------------------------------------------

    def plan(self, text: str, declared: int) -> tuple[StatementInfo, _Rewritten | None]:
        words = leading_words(text)
        first = words[0] if words else ""
        if not self.prefilter.may_concern(text):
            return StatementInfo(text, first), None
        tables = self.named_tables(text)
        if first in ("SET", "RESET", "DISCARD"):
            return self.setting(text, first), None
        if first in _OPAQUE:
            return self.opaque(text, first, words, tables), None
        if first == "PREPARE":
            return self.wrapper(text, first, r"\bAS\b", tables, declared), None
        if first == "EXPLAIN":
            return self.wrapper(text, first, None, tables, declared), None
        if first == "DECLARE":
            return self.wrapper(text, first, r"\bFOR\b", tables, declared), None
        if first == "COPY":
            return self.copy(text, tables)
        if first in _DDL:
            return self.ddl(text, first, words, tables), None
        if first == "DO" or first == "MERGE":
            if tables:
                raise refuse_table(first, tables[0], "run the statement without pgseal")
            return StatementInfo(text, first), None
        if first in _DML or text.lstrip().startswith("("):
            return self.dml(text, first or "SELECT", tables, declared)
        if tables:
            raise self.unparsable(tables)
        return StatementInfo(text, first), None

    def named_tables(self, text: str) -> list[ProtectedTable]:
        """Configured tables whose bare name occurs in the text (conservative)."""
        body = text.lower()
        return [
            t
            for t in self.rules.tables.values()
            if re.search(r"\b" + re.escape(t.name.lower()) + r"\b", body)
        ]

    def unparsable(self, tables: list[ProtectedTable]) -> PlanRefused:
        return PlanRefused(
            "pgseal could not parse this statement; it touches encrypted table "
            + tables[0].qualified,
            "simplify the statement or run it without pgseal",
        )

    def setting(self, text: str, first: str) -> StatementInfo:
        body = strip_comments(text)
        if first == "SET":
            m = _TENANT_SET.match(body)
            if m is not None:
                scope = (m.group("scope") or "").upper()
                command = TenantCommand(_unquote_tenant(m.group("value")), scope == "LOCAL")
                return StatementInfo(text, first, tenant_command=command)
            if _TENANT_NAMED.search(body):
                raise PlanRefused(
                    "pgseal: this form of SET pgseal.tenant is not supported",
                    "use SET [LOCAL] pgseal.tenant = 'id'",
                )
            return StatementInfo(text, first)
        if _RESET_ALL.match(body) or (
            first == "RESET" and re.fullmatch(r"\s*RESET\s+pgseal\.tenant\s*", body, re.IGNORECASE)
        ):
            return StatementInfo(text, first, tenant_command=TenantCommand(None, False))
        return StatementInfo(text, first)

    def opaque(
        self, text: str, first: str, words: list[str], tables: list[ProtectedTable]
    ) -> StatementInfo:
        writes = frozenset(t.qualified for t in tables) if first == "TRUNCATE" else frozenset()
        return StatementInfo(text, first, writes=writes)

    def ddl(
        self, text: str, first: str, words: list[str], tables: list[ProtectedTable]
    ) -> StatementInfo:
        if not tables:
            return StatementInfo(text, first, is_ddl=False)
        if first == "CREATE":
            objects = set(words[1:4])
            if objects & _CODE_OBJECTS:
                raise refuse_table(
                    "CREATE " + next(w for w in words[1:4] if w in _CODE_OBJECTS),
                    tables[0],
                    "views, rules, functions and triggers would bypass pgseal",
                )
            if _CREATE_AS.search(strip_comments(text)):
                raise refuse_table(
                    "CREATE TABLE ... AS", tables[0], "copy rows through pgseal with INSERT"
                )
            temp = _CREATE_TEMP_TABLE.match(strip_comments(text))
            if temp is not None:
                name = temp.group(1)
                name = name[1:-1].replace('""', '"') if name.startswith('"') else name.lower()
                for table in tables:
                    if table.name == name:
                        # pg_temp comes first in every search_path: for this session
                        # the bare name would be the temporary table, whose values
                        # pgseal would seal and whose envelopes it would not open.
                        raise refuse_table(
                            "a temporary table named like it",
                            table,
                            "a temporary table of that name would take its place in this "
                            "session; give it another name",
                        )
        return StatementInfo(
            text, first, is_ddl=True, writes=frozenset(t.qualified for t in tables)
        )

    def wrapper(
        self,
        text: str,
        first: str,
        marker: str | None,
        tables: list[ProtectedTable],
        declared: int,
    ) -> StatementInfo:
        """PREPARE / EXPLAIN / DECLARE: allowed only if the inner statement needs nothing."""
        body = strip_comments(text)
        inner: str | None = None
        if marker is not None:
            m = re.search(marker, body, re.IGNORECASE)
            inner = body[m.end() :] if m else None
        else:
            m = re.search(
                r"\b(SELECT|INSERT|UPDATE|DELETE|WITH|VALUES|TABLE)\b", body, re.IGNORECASE
            )
            inner = body[m.start() :] if m else None
        if inner is None or not inner.strip():
            if tables:
                raise self.unparsable(tables)
            return StatementInfo(text, first)
        info, rewritten = self.plan(inner, declared)
        if rewritten is not None:
            table = tables[0] if tables else None
            hint = "use the extended protocol or run the statement directly"
            if table is not None:
                raise refuse_table(f"{first} of a statement that pgseal rewrites", table, hint)
            raise PlanRefused(
                f"pgseal: {first} of a statement that pgseal rewrites is not supported", hint
            )
        return StatementInfo(text, first, reads=info.reads, writes=info.writes)

    # --- DML ------------------------------------------------------------------------

    def parse(self, text: str, tables: list[ProtectedTable]) -> exp.Expr:
        try:
            trees = [
                t for t in sqlglot.parse(space_parameters(text), read="postgres") if t is not None
            ]
        except SqlglotError:
            trees = []
        if len(trees) != 1 or not isinstance(
            trees[0],
            exp.Select | exp.SetOperation | exp.Insert | exp.Update | exp.Delete | exp.Subquery,
        ):
            if tables:
                raise self.unparsable(tables)
            raise _NotOurs
        return trees[0]

    def dml(
        self, text: str, first: str, tables: list[ProtectedTable], declared: int
    ) -> tuple[StatementInfo, _Rewritten | None]:
        if _SET_CONFIG_TENANT.search(text):
            raise PlanRefused(
                "pgseal: set_config('pgseal.tenant', ...) is not supported",
                "use SET [LOCAL] pgseal.tenant = 'id'",
            )
        if first == "TABLE":
            return StatementInfo(text, first, reads=frozenset(t.qualified for t in tables)), None
        try:
            tree = self.parse(text, tables)
        except _NotOurs:
            return StatementInfo(text, first), None
        self.check_bare_names(tree)
        if isinstance(tree, exp.Select) and tree.args.get("into") is not None and tables:
            raise refuse_table("SELECT INTO", tables[0], "copy rows through pgseal with INSERT")
        tree = unnest_insert_as_values(sentinel_insert_as_values(tree))
        findings = analyze(tree, self.rules, self.tenant)
        operation = _operation_of(tree, first)
        info = StatementInfo(
            text, operation, reads=frozenset(findings.reads), writes=frozenset(findings.writes)
        )
        if not findings.needs_rewrite:
            return info, None
        if self.tenant_reset and _uses_session_tenant(findings):
            col = _first_column(findings)
            raise PlanRefused(
                f"pgseal: cannot tell which business owns this write to {col.qualified}",
                "do not RESET pgseal.tenant in the same query string as the write",
                sqlstate="42501",
            )
        result = apply_rewrites(tree, findings, text, declared)
        return info, _Rewritten(
            result.fragments, result.slots, result.params, result.client_param_count
        )

    def check_bare_names(self, tree: exp.Expr) -> None:
        """A bare table name configured only outside ``public`` is ambiguous: refuse.

        pgseal assumes ``search_path`` finds ``public`` first; a bare name whose only
        configured table lives in another schema could be that table (through the
        session's search_path) and must not be written as plaintext.
        """
        for table in tree.find_all(exp.Table):
            if table.args.get("db") or not isinstance(table.this, exp.Identifier):
                continue
            name = ident(table.this)
            if f"public.{name}" in self.rules.tables:
                continue
            for qualified, protected in self.rules.tables.items():
                if protected.name == name:
                    raise refuse_table(
                        "an unqualified table name",
                        protected,
                        f"schema-qualify the table: {qualified}",
                    )

    # --- COPY -----------------------------------------------------------------------

    def copy(
        self, text: str, tables: list[ProtectedTable]
    ) -> tuple[StatementInfo, _Rewritten | None]:
        body = strip_comments(text)
        m = re.match(r"\s*COPY\s*", body, re.IGNORECASE)
        assert m is not None
        pos = m.end()
        if body[pos : pos + 1] == "(":
            return self.copy_query(text, body, pos, tables), None
        target = _COPY_TABLE.match(body, pos)
        if target is None:
            if tables:
                raise self.unparsable(tables)
            return StatementInfo(text, "COPY"), None
        schema = _ident_text(target.group("schema")) if target.group("schema") else "public"
        name = _ident_text(target.group("name"))
        table = self.rules.tables.get(f"{schema}.{name}")
        if table is None:
            if not target.group("schema"):
                # Bare names configured only in another schema: fail closed.
                for protected in self.rules.tables.values():
                    if protected.name == name:
                        raise refuse_table("COPY of an unqualified table name", protected)
            return StatementInfo(text, "COPY"), None
        columns: tuple[str, ...] | None = None
        if target.group("cols") is not None:
            columns = tuple(
                _ident_text(c.strip()) for c in target.group("cols").split(",") if c.strip()
            )
        direction = target.group("dir").lower()
        where = target.group("where")
        if not re.match(r"(STDIN|STDOUT)\b", where, re.IGNORECASE):
            raise refuse_table(
                "COPY to or from a file or program",
                table,
                "use COPY ... FROM STDIN / TO STDOUT through pgseal",
            )
        if re.search(r"\bWHERE\b", where, re.IGNORECASE):
            raise refuse_table("COPY ... WHERE", table, "filter after loading")
        fmt = _copy_format(where)
        reads = frozenset({table.qualified}) if direction == "to" else frozenset()
        writes = frozenset({table.qualified}) if direction == "from" else frozenset()
        blind = {c.searchable for c in table.columns.values() if c.searchable}
        if direction == "from":
            if columns is None:
                raise refuse_table(
                    "COPY FROM without a column list", table, "name the columns: COPY t (col, ...)"
                )
            for name_ in columns:
                if name_ in blind:
                    raise refuse_table(f"COPY into blind-index column {name_}", table)
        info = StatementInfo(
            text,
            "COPY",
            reads=reads,
            writes=writes,
            copy=CopyInfo(table.qualified, direction, fmt, columns),
        )
        added = tuple(
            col for n in (columns or ()) if (col := table.column(n)) is not None and col.searchable
        )
        # Without the tenant column the rows would not name the business their
        # envelopes belong to: pgseal appends it and fills in the session's tenant
        # (the stream refuses the COPY when the session has none), as for INSERT.
        add_tenant = (
            direction == "from"
            and table.tenant_column not in (columns or ())
            and any(table.column(n) is not None for n in (columns or ()))
        )
        if direction != "from" or not (added or add_tenant):
            return info, None
        # The stream gains one blind-index value per searchable column, then the
        # tenant when it was missing, at the end.
        names = [c.searchable or "" for c in added]
        if add_tenant:
            names.append(table.tenant_column)
        end = target.end("cols")
        extra = "".join(", " + make_identifier(n).sql(dialect="postgres") for n in names)
        new_text = _splice_after_comment_strip(text, body, end, extra)
        copy = CopyInfo(
            table.qualified,
            direction,
            fmt,
            (*(columns or ()), *names),
            appended_tenant=add_tenant,
        )
        info = StatementInfo(text, "COPY", reads=reads, writes=writes, copy=copy)
        return info, _Rewritten((new_text,), (), (), 0)

    def copy_query(
        self, text: str, body: str, pos: int, tables: list[ProtectedTable]
    ) -> StatementInfo:
        end = _matching_paren(body, pos)
        if end < 0:
            if tables:
                raise self.unparsable(tables)
            return StatementInfo(text, "COPY")
        inner = body[pos + 1 : end]
        rest = body[end + 1 :]
        try:
            tree = self.parse(inner, tables)
        except _NotOurs:
            return StatementInfo(text, "COPY")
        self.check_bare_names(tree)
        findings = analyze(tree, self.rules, self.tenant)
        if not findings.reads and not findings.writes:
            return StatementInfo(text, "COPY")
        table = self.rules.tables[sorted(findings.reads | findings.writes)[0]]
        if not re.match(r"\s*TO\s+STDOUT\b", rest, re.IGNORECASE):
            raise refuse_table("COPY to a file or program", table, "use COPY (...) TO STDOUT")
        if findings.needs_rewrite or findings.writes:
            raise refuse_table(
                "COPY of a query with a search or write", table, "run the query instead"
            )
        if findings.outputs is None or findings.output_names is None:
            raise refuse_table("COPY (SELECT *)", table, "list the columns in the query")
        copy = CopyInfo(None, "to", _copy_format(rest), findings.output_names, findings.outputs)
        return StatementInfo(text, "COPY", reads=frozenset(findings.reads), copy=copy)


class _NotOurs(Exception):
    """Unparsable text naming no configured table: pass it through."""


_IDENT = r'(?:"(?:[^"]|"")*"|[A-Za-z_][A-Za-z0-9_$]*)'
_COPY_TABLE = re.compile(
    rf"""(?:(?P<schema>{_IDENT})\s*\.\s*)?(?P<name>{_IDENT})\s*
         (?:\((?P<cols>[^)]*)\))?\s*
         (?P<dir>FROM|TO)\s+(?P<where>.*)$""",
    re.IGNORECASE | re.VERBOSE | re.DOTALL,
)


def _ident_text(raw: str) -> str:
    raw = raw.strip()
    if raw.startswith('"'):
        return raw[1:-1].replace('""', '"')
    return raw.lower()


def _copy_format(options: str) -> str:
    m = re.search(r"\bFORMAT\s*'?(\w+)'?", options, re.IGNORECASE)
    if m is not None:
        return m.group(1).lower()
    if re.search(r"\bBINARY\b", options, re.IGNORECASE):
        return "binary"
    if re.search(r"\bCSV\b", options, re.IGNORECASE):
        return "csv"
    return "text"


def _matching_paren(text: str, start: int) -> int:
    depth = 0
    i = start
    n = len(text)
    while i < n:
        c = text[i]
        if c == "'" or c == '"':
            j = text.find(c, i + 1)
            while j >= 0 and j + 1 < n and text[j + 1] == c:
                j = text.find(c, j + 2)
            if j < 0:
                return -1
            i = j + 1
            continue
        if c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    return -1


def _splice_after_comment_strip(text: str, body: str, end_in_body: int, extra: str) -> str:
    # The column list was found in the comment-free body; when the text has no
    # comments the offsets coincide, otherwise the rewritten statement is the body.
    base = text if body == text else body
    return base[:end_in_body] + extra + base[end_in_body:]


def _operation_of(tree: exp.Expr, first: str) -> str:
    if isinstance(tree, exp.Insert):
        return "INSERT"
    if isinstance(tree, exp.Update):
        return "UPDATE"
    if isinstance(tree, exp.Delete):
        return "DELETE"
    if first == "WITH":
        for node in tree.find_all(exp.Insert, exp.Update, exp.Delete):
            return type(node).__name__.upper()
    return "SELECT"


def _uses_session_tenant(findings: Findings) -> bool:
    return any(isinstance(v.tenant, SessionTenant) for v in findings.values) or any(
        isinstance(s.tenant, SessionTenant) for s in findings.searches
    )


def _first_column(findings: Findings) -> ProtectedColumn:
    if findings.values:
        return findings.values[0].column
    return findings.searches[0].column
