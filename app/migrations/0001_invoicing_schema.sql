-- The invoicing app's schema.
--
-- `{{enc:T}}` marks a column that pgseal stores encrypted; T is the type the
-- application reads and writes (pgseal's "logical type"). `python -m app migrate`
-- renders it as `bytea` (the default: pgseal deployment, envelopes on disk) or,
-- with --plaintext-baseline, as T itself (a plain schema for direct-Postgres runs:
-- the benchmark's comparison).
-- Every `{{enc:T}}` column must appear in config.yaml's tables: with type T; a
-- test checks both ways.
--
-- `<column>_bidx bytea` columns hold pgseal's blind index for equality search.
-- pgseal fills them; the application never names them.
--
-- Every table carries business_id (businesses.id is the business itself).
-- Foreign keys are composite (business_id, id) so no row can point at another
-- business's row, whatever the application sends.

CREATE TABLE businesses (
    id                  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name                text NOT NULL,
    currency            text NOT NULL DEFAULT 'GBP' CHECK (currency ~ '^[A-Z]{3}$'),
    invoice_prefix      text NOT NULL DEFAULT 'INV',
    quote_prefix        text NOT NULL DEFAULT 'QUO',
    next_invoice_number integer NOT NULL DEFAULT 1,
    next_quote_number   integer NOT NULL DEFAULT 1,
    created_at          timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE users (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    business_id   bigint NOT NULL REFERENCES businesses (id) ON DELETE CASCADE,
    email         {{enc:text}} NOT NULL,
    email_bidx    bytea,
    full_name     {{enc:text}} NOT NULL,
    password_hash {{enc:text}} NOT NULL,
    totp_secret   {{enc:text}},
    -- Roles are a closed set (app.access.Role); the grants live in code.
    role          text NOT NULL CHECK (role IN ('owner', 'accountant', 'staff')),
    created_at    timestamptz NOT NULL DEFAULT now(),
    UNIQUE (business_id, id)
);
CREATE INDEX users_email_bidx ON users (business_id, email_bidx);

CREATE TABLE customers (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    business_id     bigint NOT NULL REFERENCES businesses (id) ON DELETE CASCADE,
    company_name    {{enc:text}} NOT NULL,
    contact_name    {{enc:text}},
    email           {{enc:text}},
    email_bidx      bytea,
    phone           {{enc:text}},
    address         {{enc:text}},
    tax_id          {{enc:text}},
    tax_id_bidx     bytea,
    vat_number      {{enc:text}},
    vat_number_bidx bytea,
    created_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (business_id, id)
);
CREATE INDEX customers_email_bidx ON customers (business_id, email_bidx);
CREATE INDEX customers_tax_id_bidx ON customers (business_id, tax_id_bidx);
CREATE INDEX customers_vat_number_bidx ON customers (business_id, vat_number_bidx);

CREATE TABLE suppliers (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    business_id     bigint NOT NULL REFERENCES businesses (id) ON DELETE CASCADE,
    company_name    {{enc:text}} NOT NULL,
    contact_name    {{enc:text}},
    email           {{enc:text}},
    email_bidx      bytea,
    phone           {{enc:text}},
    address         {{enc:text}},
    tax_id          {{enc:text}},
    tax_id_bidx     bytea,
    vat_number      {{enc:text}},
    vat_number_bidx bytea,
    created_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (business_id, id)
);
CREATE INDEX suppliers_email_bidx ON suppliers (business_id, email_bidx);
CREATE INDEX suppliers_tax_id_bidx ON suppliers (business_id, tax_id_bidx);
CREATE INDEX suppliers_vat_number_bidx ON suppliers (business_id, vat_number_bidx);

CREATE TABLE quotes (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    business_id  bigint NOT NULL REFERENCES businesses (id) ON DELETE CASCADE,
    customer_id  bigint NOT NULL,
    number       text NOT NULL,
    issue_date   date NOT NULL,
    valid_until  date NOT NULL,
    status       text NOT NULL DEFAULT 'sent'
                 CHECK (status IN ('sent', 'accepted', 'declined', 'invoiced')),
    currency     text NOT NULL,
    notes        {{enc:text}},
    created_at   timestamptz NOT NULL DEFAULT now(),
    UNIQUE (business_id, id),
    UNIQUE (business_id, number),
    FOREIGN KEY (business_id, customer_id) REFERENCES customers (business_id, id)
);

CREATE TABLE invoices (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    business_id  bigint NOT NULL REFERENCES businesses (id) ON DELETE CASCADE,
    customer_id  bigint NOT NULL,
    quote_id     bigint,
    number       text NOT NULL,
    issue_date   date NOT NULL,
    due_date     date NOT NULL,
    status       text NOT NULL DEFAULT 'issued'
                 CHECK (status IN ('issued', 'partially_paid', 'paid', 'void')),
    currency     text NOT NULL,
    notes        {{enc:text}},
    created_at   timestamptz NOT NULL DEFAULT now(),
    UNIQUE (business_id, id),
    UNIQUE (business_id, number),
    CHECK (due_date >= issue_date),
    FOREIGN KEY (business_id, customer_id) REFERENCES customers (business_id, id),
    FOREIGN KEY (business_id, quote_id) REFERENCES quotes (business_id, id)
);
CREATE INDEX invoices_by_date ON invoices (business_id, issue_date DESC);

-- One table for the lines of invoices and of quotes: exactly one parent is set.
-- quantity, unit_price and tax_rate stay plaintext so totals are summed in SQL.
CREATE TABLE line_items (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    business_id  bigint NOT NULL REFERENCES businesses (id) ON DELETE CASCADE,
    invoice_id   bigint,
    quote_id     bigint,
    position     integer NOT NULL,
    description  {{enc:text}} NOT NULL,
    quantity     numeric(12, 3) NOT NULL CHECK (quantity > 0),
    unit_price   numeric(12, 2) NOT NULL CHECK (unit_price >= 0),
    tax_rate     numeric(5, 2) NOT NULL DEFAULT 0 CHECK (tax_rate >= 0),
    CHECK ((invoice_id IS NULL) <> (quote_id IS NULL)),
    FOREIGN KEY (business_id, invoice_id) REFERENCES invoices (business_id, id) ON DELETE CASCADE,
    FOREIGN KEY (business_id, quote_id) REFERENCES quotes (business_id, id) ON DELETE CASCADE
);
CREATE INDEX line_items_invoice ON line_items (business_id, invoice_id);
CREATE INDEX line_items_quote ON line_items (business_id, quote_id);

CREATE TABLE payments (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    business_id  bigint NOT NULL REFERENCES businesses (id) ON DELETE CASCADE,
    invoice_id   bigint NOT NULL,
    paid_on      date NOT NULL,
    amount       numeric(12, 2) NOT NULL CHECK (amount > 0),
    method       {{enc:text}} NOT NULL,
    reference    {{enc:text}},
    notes        {{enc:text}},
    created_at   timestamptz NOT NULL DEFAULT now(),
    FOREIGN KEY (business_id, invoice_id) REFERENCES invoices (business_id, id)
);
CREATE INDEX payments_invoice ON payments (business_id, invoice_id);

CREATE TABLE expenses (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    business_id  bigint NOT NULL REFERENCES businesses (id) ON DELETE CASCADE,
    user_id      bigint NOT NULL,
    supplier_id  bigint,
    spent_on     date NOT NULL,
    category     text NOT NULL,
    amount       numeric(12, 2) NOT NULL CHECK (amount > 0),
    merchant     {{enc:text}} NOT NULL,
    description  {{enc:text}},
    created_at   timestamptz NOT NULL DEFAULT now(),
    FOREIGN KEY (business_id, user_id) REFERENCES users (business_id, id),
    FOREIGN KEY (business_id, supplier_id) REFERENCES suppliers (business_id, id)
);
CREATE INDEX expenses_by_date ON expenses (business_id, spent_on);

CREATE TABLE mileage_logs (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    business_id    bigint NOT NULL REFERENCES businesses (id) ON DELETE CASCADE,
    user_id        bigint NOT NULL,
    travelled_on   date NOT NULL,
    from_place     {{enc:text}} NOT NULL,
    to_place       {{enc:text}} NOT NULL,
    purpose        {{enc:text}},
    -- Encrypted: a journey's length says where someone went. Totals are
    -- summed in the application, so no SQL arithmetic touches it.
    distance_miles {{enc:numeric}} NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    FOREIGN KEY (business_id, user_id) REFERENCES users (business_id, id)
);
CREATE INDEX mileage_logs_by_date ON mileage_logs (business_id, travelled_on);

CREATE TABLE time_entries (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    business_id      bigint NOT NULL REFERENCES businesses (id) ON DELETE CASCADE,
    user_id          bigint NOT NULL,
    customer_id      bigint,
    worked_on        date NOT NULL,
    description      {{enc:text}} NOT NULL,
    duration_minutes integer NOT NULL CHECK (duration_minutes > 0),
    billable         boolean NOT NULL DEFAULT true,
    created_at       timestamptz NOT NULL DEFAULT now(),
    FOREIGN KEY (business_id, user_id) REFERENCES users (business_id, id),
    FOREIGN KEY (business_id, customer_id) REFERENCES customers (business_id, id)
);
CREATE INDEX time_entries_by_date ON time_entries (business_id, worked_on);

CREATE TABLE bank_accounts (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    business_id    bigint NOT NULL REFERENCES businesses (id) ON DELETE CASCADE,
    account_name   {{enc:text}} NOT NULL,
    bank_name      {{enc:text}},
    account_number {{enc:text}},
    sort_code      {{enc:text}},
    iban           {{enc:text}},
    swift_bic      {{enc:text}},
    currency       text NOT NULL,
    is_primary     boolean NOT NULL DEFAULT false,
    created_at     timestamptz NOT NULL DEFAULT now(),
    UNIQUE (business_id, id)
);

-- The text printed on every invoice telling customers how to pay (one per business).
CREATE TABLE payment_instructions (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    business_id     bigint NOT NULL UNIQUE REFERENCES businesses (id) ON DELETE CASCADE,
    bank_account_id bigint,
    instructions    {{enc:text}} NOT NULL,
    updated_at      timestamptz NOT NULL DEFAULT now(),
    FOREIGN KEY (business_id, bank_account_id) REFERENCES bank_accounts (business_id, id)
);

CREATE TABLE integration_credentials (
    id                  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    business_id         bigint NOT NULL REFERENCES businesses (id) ON DELETE CASCADE,
    provider            text NOT NULL,
    api_key             {{enc:text}},
    oauth_refresh_token {{enc:text}},
    updated_at          timestamptz NOT NULL DEFAULT now(),
    UNIQUE (business_id, provider)
);
