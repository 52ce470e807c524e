@postgres @tablespaces @nightly
Feature: A cluster with tablespaces, and backups taken from a standby
  Many clusters keep big tables or their indexes on a second disk. The recovery plan's promises
  hold for them too: the latest backup brings every tablespace back after the server and its
  disks are lost, point-in-time and single-table recovery work on a table that lives in a
  tablespace, the trial restore checks every tablespace, and a backup taken from a hot standby
  (so the primary carries no backup load) restores the primary's data.

  Background:
    Given an empty backup repository
    And a running PostgreSQL server archiving WAL to the repository
    And the shop schema with 300 users
    And table "events" with 5000 rows lives in tablespace "fast" and its index in tablespace "idx"

  Scenario: Every tablespace comes back after the server and its disks are lost
    Given the row count and content checksum of every table are recorded
    And the indexes are recorded
    When a full backup is taken
    And the server is destroyed with its tablespaces
    And the latest backup is restored into a new server
    Then the restored server keeps tablespaces "fast, idx" in new directories
    And every table has the same row count and content checksum as before the loss
    And every index recorded before the loss is present
    And every index is valid and passes amcheck
    And the measured RTO is within 4 hours

  Scenario: A bad change to a table in a tablespace is undone by point-in-time recovery
    Given a full backup is taken
    When the row count and content checksum of every table are recorded
    And marker "safe" is committed
    And a bad change wipes the events table
    And the WAL is archived
    And the server is destroyed with its tablespaces
    And the database is restored to the time of marker "safe"
    Then recovery ended on a new timeline
    And marker "safe" is present
    And the restored tables "events, orders, users" are as recorded
    And the restored server keeps tablespaces "fast, idx" in new directories
    And the measured RTO is within 1 hour

  Scenario: A dropped table that lived in a tablespace comes back beside the live data
    Given a full backup is taken
    When the row count and content checksum of every table are recorded
    And marker "safe" is committed
    And the events table is dropped
    And the WAL is archived
    And the events table is restored from the time of marker "safe" as "events_back"
    Then table "events_back" holds the recorded content of "events"
    And the tables "orders, users" are as recorded
    And the measured RTO is within 30 minutes

  Scenario: The trial restore of verify checks every tablespace
    Given a full backup is taken
    When the latest backup is verified with a trial restore
    Then the trial restore checked the archives of tablespaces "fast, idx"

  Scenario: A backup taken from a hot standby restores the primary's data
    Given a hot standby streaming from the server
    When the standby has replayed everything the server wrote
    And the row count and content checksum of every table are recorded
    And a full backup is taken from the standby
    And the server is destroyed with its tablespaces
    And the latest backup is restored into a new server
    Then the restored backup was taken from a standby of the same system
    And every table has the same row count and content checksum as before the loss
    And the restored server keeps tablespaces "fast, idx" in new directories
