@postgres @disk @app
Feature: A full data disk stops the writes; everything committed before it comes back
  A runaway export fills the disk the cluster lives on. PostgreSQL refuses the next write rather
  than lose it; the server is then lost, and a restore from the backup and the archived WAL
  brings back every row committed before the disk filled.

  Scenario: The disk fills during writes, the server is lost, a restore brings every committed row back
    Given an empty backup repository
    And a running PostgreSQL server on a 160 MB disk archiving WAL to the repository
    And the database "ledger" has:
      """
      CREATE TABLE entries (id bigint PRIMARY KEY, account text NOT NULL, cents bigint NOT NULL);
      """
    And 5000 rows are added to "entries" of the database "ledger" from:
      """
      SELECT n, 'ACC-' || n % 50, n * 101
      """
    And a full backup is taken
    When 3000 rows are added to "entries" of the database "ledger" from:
      """
      SELECT 5000 + n, 'ACC-' || n % 50, n * 7
      """
    And every table of the database "ledger" is recorded
    And the WAL is archived
    And the disk of the data directory fills up
    Then this statement on the database "ledger" fails with "No space left on device":
      """
      INSERT INTO entries SELECT 100000 + n, repeat('x', 500), n FROM generate_series(1, 2000) n;
      """
    When the server is destroyed
    And the latest backup is restored into a new server
    Then every table of the database "ledger" is as recorded
    And the measured RTO is within 4 hours
