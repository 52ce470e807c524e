@postgres @pitr @rpo @nightly
Feature: Asynchronous WAL archiving
  With [wal] push_mode = "async", one archive_command call pushes the next ready segments in
  parallel and the calls for those answer from a spool in milliseconds; restores prefetch the
  WAL they replay. Recovery must be as exact as with one push per call, and PostgreSQL may
  count a segment as archived only once it is stored, even when the archiver is killed.

  Background:
    Given an empty backup repository
    And a running PostgreSQL server archiving WAL asynchronously to the repository with archive_timeout of 2 seconds
    And the shop schema with 100 users
    And a full backup is taken

  Scenario: Recover to just before a bad change from asynchronously archived WAL
    Given a writer commits a timestamped row every 20 milliseconds
    When the orders table is recorded
    And marker "safe" is committed
    And a bad change wipes the orders table
    And the WAL is archived
    And the server is destroyed
    And the database is restored to the time of marker "safe"
    Then recovery ended on a new timeline
    And marker "safe" is present
    And the orders table is as recorded

  Scenario: The loss window stays within seconds
    Given a writer commits a timestamped row every 20 milliseconds
    When the writer has run for 5 seconds
    And the server is destroyed
    And the database is restored to the latest point
    Then recovery ended on a new timeline
    And the measured RPO is within 10 seconds

  Scenario: Archive workers killed mid-push lose nothing PostgreSQL counts as archived
    When 6 segments of WAL are written while every archive worker is killed mid-push
    And every table of the database "postgres" is recorded
    And the WAL is archived
    Then every segment PostgreSQL counts as archived is in the repository, intact
    When the server is destroyed
    And the database is restored to the latest point
    Then every table of the database "postgres" is as recorded
