#!/bin/sh
# The invoicing application's own smoke test, as its deploy pipeline runs it against a
# database: the tables it reads are there and an invoice total can be computed. The drill sets
# PGHOST, PGPORT, PGUSER (and DATABASE_URL) to the restored copy.
set -eu
customers=$(psql -X -v ON_ERROR_STOP=1 -Atc "SELECT count(*) FROM customers")
total=$(psql -X -v ON_ERROR_STOP=1 -Atc "SELECT coalesce(sum(amount_cents), 0) FROM invoices")
echo "invoicing smoke test: $customers customers, invoices total $total cents"
test "$customers" -gt 0 && test "$total" -gt 0
