"""The invoicing app's exceptions: one type per thing that can go wrong.

Every exception the service layer raises on purpose derives from ``AppError``, so
a front end (the CLI, a web handler) can turn them into one clear line. Database
errors the app does not expect are left as asyncpg's own types.
"""

from __future__ import annotations

__all__ = [
    "AccessDenied",
    "AppError",
    "AuthenticationFailed",
    "DuplicateUser",
    "InvalidInput",
    "MigrationChanged",
    "MigrationError",
    "MigrationModeMismatch",
    "NotFound",
    "Overpayment",
]


class AppError(Exception):
    """Base of every error the app raises deliberately."""


class AccessDenied(AppError):
    """The actor's role does not grant the permission the operation needs."""

    def __init__(self, role: str, permission: str) -> None:
        super().__init__(f"role {role!r} may not {permission.replace('_', ' ')}")
        self.role = role
        self.permission = permission


class AuthenticationFailed(AppError):
    """Wrong email, password or TOTP code (deliberately not saying which)."""

    def __init__(self) -> None:
        super().__init__("authentication failed")


class NotFound(AppError):
    """No such row in the actor's business (rows of other businesses are invisible)."""

    def __init__(self, entity: str, key: object) -> None:
        super().__init__(f"{entity} {key} not found")
        self.entity = entity
        self.key = key


class InvalidInput(AppError, ValueError):
    """A value the business rules reject (empty invoice, negative amount, ...)."""


class Overpayment(InvalidInput):
    """A payment larger than the invoice's balance due."""


class DuplicateUser(AppError):
    """A user with this email already exists in the business."""

    def __init__(self) -> None:
        super().__init__("a user with this email already exists in this business")


class MigrationError(AppError):
    """The database's schema history does not fit the migrations shipped with the app."""


class MigrationModeMismatch(MigrationError):
    """The database was migrated with the other storage mode (bytea vs plaintext)."""


class MigrationChanged(MigrationError):
    """An applied migration's file has changed since it was applied."""
