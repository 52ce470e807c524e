@postgres @pitr @rpo @nightly
Feature: Data loss window (RPO) with continuous WAL archiving
  The plan's RPO for database corruption is 15 minutes, from WAL archiving with an
  archive_timeout. The drill measures it: a writer commits a timestamped row every 20 ms, the
  server is lost without warning, and the newest row that survives the recovery tells how much
  committed work was lost.

  Background:
    Given an empty backup repository

  Scenario: archive_command with an archive_timeout bounds the loss
    Given a running PostgreSQL server archiving WAL to the repository with archive_timeout of 2 seconds
    And the shop schema with 100 users
    And a full backup is taken
    And a writer commits a timestamped row every 20 milliseconds
    When the writer has run for 5 seconds
    And the server is destroyed
    And the database is restored to the latest point
    Then recovery ended on a new timeline
    And the measured RPO is within 15 minutes
    And the measured RPO is within 10 seconds
    And the measured RTO is within 1 hour

  Scenario: WAL streaming ships the open segment and bounds the loss by its interval
    Given a running PostgreSQL server with the shop schema and 100 users
    And a full backup is taken
    And WAL is streamed to the repository with the open segment shipped every 1 second
    And a writer commits a timestamped row every 20 milliseconds
    When the writer has run for 5 seconds
    And the server is destroyed
    And the database is restored to the latest point
    Then recovery ended on a new timeline
    And the measured RPO is within 15 minutes
    And the measured RPO is within 3 seconds
    And the measured RTO is within 1 hour
