"""The column rules a DBA writes in config.yaml, as immutable values.

These are the nouns every other part agrees on: the loader (``rules.config``)
builds them, the planner (``rules.plan``) reads them, the proxy and the DBA tools
look columns up in them. They hold no secrets and no database state (OIDs and
attribute numbers live in the catalog map).
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = [
    "LOGICAL_TYPES",
    "NORMALIZERS",
    "ProtectedColumn",
    "ProtectedTable",
    "Rules",
    "qualify",
]

#: Logical types a protected column may have (the type the application sees).
#: ``varchar`` carries an optional length in ``ProtectedColumn.type_modifier``.
LOGICAL_TYPES = frozenset(
    {
        "text",
        "varchar",
        "integer",
        "bigint",
        "smallint",
        "numeric",
        "boolean",
        "date",
        "timestamp",
        "timestamptz",
        "uuid",
        "jsonb",
        "bytea",
    }
)

#: Normalisations a searchable column may apply before its blind index.
NORMALIZERS = frozenset({"trim", "casefold", "collapse_spaces"})


def qualify(name: str) -> str:
    """``customers`` -> ``public.customers``; already-qualified names are kept.

    >>> qualify("customers"), qualify("billing.invoices")
    ('public.customers', 'billing.invoices')
    """
    return name if "." in name else f"public.{name}"


@dataclass(frozen=True, slots=True)
class ProtectedColumn:
    """One encrypted column: ``schema.table.column`` is also the envelope's AAD."""

    schema: str
    table: str
    name: str
    logical_type: str
    type_modifier: int | None = None  # varchar(n) -> n
    storage: str = "bytea"  # "bytea" or "text" (armoured envelope)
    searchable: str | None = None  # name of the blind-index column
    normalize: tuple[str, ...] = ()
    migrating: bool = False  # reads accept plaintext as well as envelopes
    # Computed once: the proxy names the column (the AAD) for every field it opens.
    qualified: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "qualified", f"{self.schema}.{self.table}.{self.name}")

    @property
    def aad_label(self) -> bytes:
        return self.qualified.encode()


@dataclass(frozen=True, slots=True)
class ProtectedTable:
    schema: str
    name: str
    tenant_column: str
    columns: dict[str, ProtectedColumn] = field(default_factory=dict)

    @property
    def qualified(self) -> str:
        return f"{self.schema}.{self.name}"

    def column(self, name: str) -> ProtectedColumn | None:
        return self.columns.get(name)


@dataclass(frozen=True, slots=True)
class Rules:
    """All protected tables, keyed by ``schema.table``."""

    tables: dict[str, ProtectedTable] = field(default_factory=dict)
    require_tenant: bool = False

    def table(self, name: str) -> ProtectedTable | None:
        return self.tables.get(qualify(name))

    @property
    def table_names(self) -> frozenset[str]:
        """Bare table names (lower case), for the cheap pass-through test."""
        return frozenset(t.name.lower() for t in self.tables.values())
