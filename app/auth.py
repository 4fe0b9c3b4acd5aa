"""Password hashes (bcrypt) and one-time codes (TOTP, RFC 6238 via pyotp).

These are the application's own login checks, not database encryption: the app
stores the bcrypt hash and the TOTP secret like any other value and pgseal
encrypts them on the way to disk.

bcrypt's work factor is 12 in production (``DEFAULT_BCRYPT_ROUNDS``, about a
quarter of a second per hash); every function that hashes takes ``rounds`` so
tests and the seed can use a low one (4). Verification reads the factor from the
stored hash, so hashes of different strengths coexist.
"""

from __future__ import annotations

import datetime as dt
import functools

import bcrypt
import pyotp

__all__ = [
    "DEFAULT_BCRYPT_ROUNDS",
    "check_password",
    "check_totp",
    "hash_password",
    "new_totp_secret",
    "totp_provisioning_uri",
]

DEFAULT_BCRYPT_ROUNDS = 12


@functools.cache
def _decoy_hash() -> bytes:
    # Checked when the email is unknown, at the production work factor, so that a
    # wrong email costs as much time as a wrong password: response times do not
    # reveal who has an account. Made on first use, not at import.
    return bcrypt.hashpw(b"decoy", bcrypt.gensalt(DEFAULT_BCRYPT_ROUNDS))


def hash_password(password: str, *, rounds: int = DEFAULT_BCRYPT_ROUNDS) -> str:
    """A bcrypt hash (``$2b$...``) of ``password``.

    bcrypt reads only the first 72 bytes; longer passwords are accepted as is.
    """
    if not password:
        raise ValueError("empty password")
    return bcrypt.hashpw(password.encode()[:72], bcrypt.gensalt(rounds)).decode()


def check_password(password: str, password_hash: str | None) -> bool:
    """Whether ``password`` matches ``password_hash`` (``None``: an unknown user)."""
    candidate = password.encode()[:72]
    if password_hash is None:
        bcrypt.checkpw(candidate, _decoy_hash())
        return False
    return bcrypt.checkpw(candidate, password_hash.encode())


def new_totp_secret() -> str:
    """A fresh random base32 TOTP secret (160 bits)."""
    return pyotp.random_base32(32)


def totp_provisioning_uri(secret: str, *, account: str, issuer: str) -> str:
    """The ``otpauth://`` URI an authenticator app scans as a QR code."""
    uri: str = pyotp.TOTP(secret).provisioning_uri(name=account, issuer_name=issuer)
    return uri


def check_totp(secret: str, code: str, *, at: dt.datetime | None = None) -> bool:
    """Whether ``code`` is valid for ``secret`` now (or at ``at``), ±1 step of drift."""
    code = code.strip().replace(" ", "")
    if not code.isdigit():
        return False
    when = at if at is not None else dt.datetime.now(dt.UTC)
    ok: bool = pyotp.TOTP(secret).verify(code, for_time=when, valid_window=1)
    return ok
