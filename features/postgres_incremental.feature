@postgres @incremental @nightly
Feature: Incremental backups on PostgreSQL 17
  A full backup every day costs the whole database every day. PostgreSQL 17 backs up only the
  blocks changed since the previous backup (summarize_wal = on), and a restore combines the
  chain, the full backup first, with pg_combinebackup. The plan's promises must hold when the
  backup restored is the last link of such a chain. (PostgreSQL 17 or later: on an older local
  server these scenarios are skipped with that reason; `backup-engine drill --pg-version 17`
  runs them in the PostgreSQL 17 image.)

  Background:
    Given an empty backup repository
    And a running PostgreSQL 17 server archiving WAL to the repository, summarizing WAL
    And the shop schema with 2000 users

  Scenario: Total loss after a full backup and three incremental ones
    When a full backup is taken
    And 200 more users sign up
    And an incremental backup is taken
    And 200 more users sign up
    And an incremental backup is taken
    And a bad change wipes the orders table
    And an incremental backup is taken
    And the row count and content checksum of every table are recorded
    And the server is destroyed
    And the latest backup is restored into a new server
    Then the restored backup is the fourth one taken
    And the restore combined a chain of 4 backups
    And each incremental backup stored less than a quarter of the full one
    And every table has the same row count and content checksum as before the loss
    And every index is valid and passes amcheck
    And the measured RTO is within 4 hours

  Scenario: Point-in-time recovery from an incremental backup
    When a full backup is taken
    And 200 more users sign up
    And an incremental backup is taken
    And the orders table is recorded
    And marker "safe" is committed
    And a bad change wipes the orders table
    And the WAL is archived
    And the server is destroyed
    And the database is restored to the time of marker "safe"
    Then the restore combined a chain of 2 backups
    And recovery ended on a new timeline
    And marker "safe" is present
    And the orders table is as recorded

  Scenario: A dropped table comes back from an incremental backup
    When a full backup is taken
    And 200 more users sign up
    And an incremental backup is taken
    And the row count and content checksum of every table are recorded
    And marker "safe" is committed
    And the orders table is dropped
    And the WAL is archived
    And the orders table is restored from the time of marker "safe" as "orders_back"
    Then table "orders_back" holds the recorded content of "orders"
    And the tables "users, sessions" are as recorded

  Scenario: Five weeks of Sunday fulls and daily incrementals, then expire
    When a base backup is taken every day for 35 days, full on Sundays and incremental otherwise
    And the WAL is archived
    And expire runs with the plan's retention policy
    Then every kept incremental backup has its whole chain
    And the kept base backups are the plan's table and the parents of kept incrementals
    When the server is destroyed
    And the database is restored to the lsn of marker "day-33"
    Then marker "day-33" is present
    And recovery ended on a new timeline

  Scenario: A chain whose full backup was deleted is refused before anything is written
    When a full backup is taken
    And an incremental backup is taken
    And 200 more users sign up
    And the WAL is archived
    And the first backup's objects are deleted from the repository
    And a restore of the latest backup into a new directory is attempted
    Then the restore is refused with "which is not in the repository"
    And the new directory was not created

  Scenario: An incremental backup without WAL summaries is refused, naming the setting
    When summarize_wal is turned off
    And an incremental backup is attempted
    Then the backup is refused with "summarize_wal = on"
    And the repository holds no base backup

  Scenario: A chain of a cluster with tablespaces brings every tablespace back
    Given table "events" with 5000 rows lives in tablespace "fast" and its index in tablespace "idx"
    When a full backup is taken
    And 200 more users sign up
    And a bad change wipes the events table
    And an incremental backup is taken
    And the row count and content checksum of every table are recorded
    And the server is destroyed with its tablespaces
    And the latest backup is restored into a new server
    Then the restore combined a chain of 2 backups
    And the restored server keeps tablespaces "fast, idx" in new directories
    And every table has the same row count and content checksum as before the loss
    And every index is valid and passes amcheck

  Scenario: A damaged server is repaired in place from a chain, tablespaces included
    Given table "events" with 5000 rows lives in tablespace "fast" and its index in tablespace "idx"
    When a full backup is taken
    And 200 more users sign up
    And an incremental backup is taken
    And the row count and content checksum of every table are recorded
    And the WAL is archived
    And a page of table "events" in the database "postgres" is corrupted on disk
    And the server is stopped and repaired in place with a delta restore of the latest backup
    Then the restore combined a chain of 2 backups
    And every table has the same row count and content checksum as before the loss
    And the delta restore wrote less than 10% of the backup besides its WAL
