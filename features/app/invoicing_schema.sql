-- The schema of an example invoicing application (not the drill's shop schema): loaded by
-- features/app_migration_pitr.feature with `"app/invoicing_schema.sql" is loaded into ...`.
CREATE TABLE customers (
    id          integer PRIMARY KEY,
    name        text NOT NULL,
    tax_exempt  boolean NOT NULL DEFAULT false
);

CREATE TABLE invoices (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    customer_id   integer NOT NULL REFERENCES customers (id),
    amount_cents  bigint NOT NULL CHECK (amount_cents >= 0),
    issued_on     date NOT NULL
);

CREATE INDEX invoices_by_customer ON invoices (customer_id, issued_on);
