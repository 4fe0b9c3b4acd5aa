"""pgseal's sample invoicing application: an ordinary app that never sees ciphertext.

A small multi-tenant invoicing service written with plain asyncpg: businesses
and their users (owner / accountant / staff), customers and suppliers, quotes,
invoices and payments, expenses, mileage and time, bank details and
integration secrets. It connects with an ordinary DSN, to Postgres or to
pgseal, and contains no cryptography and no import from ``proxy``, ``rules``
or ``crypto``: encryption is entirely pgseal's job.

Modules: ``access`` (roles and the permission table), ``accounts``,
``contacts``, ``billing``, ``bookkeeping``, ``banking``, ``integrations``,
``reports`` (the service layer: async functions taking a pool or connection
and an ``Actor``), ``schema`` and ``migrations/`` (SQL migrations), ``seed``,
``scenario`` and ``cli`` (``python -m app``).

The rules the app's SQL follows so that it runs unchanged through pgseal, where
the columns listed in the root ``config.yaml`` hold AES-GCM envelopes:

* encrypted columns are only written from ``$n`` parameters (or literals), read
  bare (``SELECT col``, aliases), tested with ``IS NULL``, and searched - the
  searchable ones - with ``=`` / ``= ANY($n)`` next to ``business_id = $1``;
* no ``ORDER BY``, ``LIKE``, functions, casts, ``DISTINCT``, ``GROUP BY`` or
  join conditions on encrypted columns: sorting and arithmetic on them happen
  in Python; money that SQL must add up is kept in plaintext columns;
* no ``INSERT ... SELECT`` or ``ON CONFLICT ... EXCLUDED`` copying encrypted
  values (pgseal must see each plaintext it encrypts): read, then write;
* every ``INSERT`` names its columns, and every statement is scoped by
  ``business_id`` (which is also how pgseal learns the tenant of a write);
* the blind-index columns (``*_bidx``) are pgseal's; the app never names them.
"""
