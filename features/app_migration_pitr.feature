@postgres @pitr @app
Feature: An invoicing application's bad migration is undone by point-in-time recovery
  An example for any application, written with the generic steps only: the schema comes from
  the application's own SQL file, the data from its own SQL, the bad change is plain SQL, and
  the checks are the application's own queries. No Python.

  Background:
    Given an empty backup repository
    And a running PostgreSQL server archiving WAL to the repository
    And "app/invoicing_schema.sql" is loaded into the database "invoicing"
    And 500 rows are added to "customers" of the database "invoicing" from:
      """
      SELECT n, 'customer ' || n, n % 7 = 0
      """
    And the database "invoicing" has:
      """
      INSERT INTO invoices (customer_id, amount_cents, issued_on)
      SELECT c.id, 1000 + c.id * 7, date '2026-11-01' + c.id % 28 FROM customers c;
      """
    And a full backup is taken

  Scenario: A migration that divided every amount by 100 is undone to just before it ran
    When the result of this query on the database "invoicing" is recorded as "revenue":
      """
      SELECT count(*), sum(amount_cents) FROM invoices
      """
    And every table of the database "invoicing" is recorded
    And marker "before migration 42" is committed
    And this bad change runs on the database "invoicing":
      """
      UPDATE invoices SET amount_cents = amount_cents / 100;
      """
    And the WAL is archived
    And the server is destroyed
    And the database is restored to the time of marker "before migration 42"
    Then the query "revenue" returns what was recorded
    And every table of the database "invoicing" is as recorded
    And the smoke test "PGDATABASE=invoicing sh app/invoicing_smoke.sh" passes against the restored copy within 1 minute
    And the measured RTO is within 1 hour
