@postgres @corruption @app
Feature: A damaged data page is caught by its checksum and the table comes back whole
  A disk or controller that writes garbage into a table's file: with data checksums PostgreSQL
  refuses to read the page instead of returning wrong rows, and a restore brings every row back.

  Background:
    Given an empty backup repository
    And a running PostgreSQL server with data checksums archiving WAL to the repository
    And the database "inventory" has:
      """
      CREATE TABLE stock (sku text PRIMARY KEY, warehouse text NOT NULL, quantity int NOT NULL);
      INSERT INTO stock SELECT 'SKU-' || n, 'WH-' || n % 5, n % 97 FROM generate_series(1, 20000) n;
      """
    And a full backup is taken

  Scenario: PostgreSQL refuses the damaged page, and a restore brings every row back
    When every table of the database "inventory" is recorded
    And the WAL is archived
    And a page of table "stock" in the database "inventory" is corrupted on disk
    Then reading table "stock" of the database "inventory" fails with "checksum"
    When the server is destroyed
    And the latest backup is restored into a new server
    Then every table of the database "inventory" is as recorded
    And the measured RTO is within 4 hours

  Scenario: The damaged server is repaired in place with a delta restore
    A database of hundreds of gigabytes with one bad page should not wait for every byte to be
    written again: `pg restore --delta` compares the server's own files with the backup and
    writes only the blocks that differ, then the archive brings it to the end of its WAL.

    When every table of the database "inventory" is recorded
    And the WAL is archived
    And a page of table "stock" in the database "inventory" is corrupted on disk
    Then reading table "stock" of the database "inventory" fails with "checksum"
    When the server is stopped and repaired in place with a delta restore of the latest backup
    Then every table of the database "inventory" is as recorded
    And the delta restore wrote less than 5% of the backup besides its WAL
    And the measured RTO is within 4 hours
