"""Who may do what: roles, permissions and the authenticated actor.

Access control lives in the service layer, not in the database: every service
function takes an ``Actor`` (the authenticated user: business, user id, role),
checks one ``Permission`` with ``require`` before touching the database, and
scopes every query by ``actor.business_id``. An actor therefore cannot name
another business at all; the business comes from the login, not from input.

Grants (owner has everything):

=====================  =====  ==========  =====
permission             owner  accountant  staff
=====================  =====  ==========  =====
manage_users             x
read_users               x        x
read/manage_contacts     x        x         x
read/manage_billing      x        x         x
log_work / read_work     x        x         x
read_reports             x        x
read_bank_details        x        x
manage_bank_details      x        x
read_credentials         x        x
manage_credentials       x
=====================  =====  ==========  =====

Staff issue invoices and log their work but see no bank details, no integration
secrets and no business-wide reports; the accountant sees and books everything
but cannot change who has access or replace integration secrets.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from app.errors import AccessDenied

__all__ = ["GRANTS", "Actor", "Permission", "Role", "require"]


class Role(StrEnum):
    OWNER = "owner"
    ACCOUNTANT = "accountant"
    STAFF = "staff"


class Permission(StrEnum):
    MANAGE_USERS = "manage_users"
    READ_USERS = "read_users"
    READ_CONTACTS = "read_contacts"
    MANAGE_CONTACTS = "manage_contacts"
    READ_BILLING = "read_billing"
    MANAGE_BILLING = "manage_billing"
    LOG_WORK = "log_work"
    READ_WORK = "read_work"
    READ_REPORTS = "read_reports"
    READ_BANK_DETAILS = "read_bank_details"
    MANAGE_BANK_DETAILS = "manage_bank_details"
    READ_CREDENTIALS = "read_credentials"
    MANAGE_CREDENTIALS = "manage_credentials"


_STAFF = frozenset(
    {
        Permission.READ_CONTACTS,
        Permission.MANAGE_CONTACTS,
        Permission.READ_BILLING,
        Permission.MANAGE_BILLING,
        Permission.LOG_WORK,
        Permission.READ_WORK,
    }
)
_ACCOUNTANT = _STAFF | {
    Permission.READ_USERS,
    Permission.READ_REPORTS,
    Permission.READ_BANK_DETAILS,
    Permission.MANAGE_BANK_DETAILS,
    Permission.READ_CREDENTIALS,
}

#: The whole policy in one table, so a test can walk it.
GRANTS: dict[Role, frozenset[Permission]] = {
    Role.OWNER: frozenset(Permission),
    Role.ACCOUNTANT: frozenset(_ACCOUNTANT),
    Role.STAFF: _STAFF,
}


@dataclass(frozen=True, slots=True)
class Actor:
    """An authenticated user acting within their own business."""

    business_id: int
    user_id: int
    role: Role

    def can(self, permission: Permission) -> bool:
        return permission in GRANTS[self.role]


def require(actor: Actor, permission: Permission) -> None:
    """Raise ``AccessDenied`` unless the actor's role grants ``permission``.

    >>> require(Actor(1, 2, Role.STAFF), Permission.READ_BANK_DETAILS)
    Traceback (most recent call last):
    ...
    app.errors.AccessDenied: role 'staff' may not read bank details
    """
    if not actor.can(permission):
        raise AccessDenied(actor.role.value, permission.value)
