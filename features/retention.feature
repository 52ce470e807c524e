@postgres @retention @nightly
Feature: Retention keeps what the plan promises
  The plan keeps daily base backups 30 days, the Sunday backup 90 days and WAL 7 days. After
  100 simulated days of backups, expire must keep exactly that, and point-in-time recovery
  into the 7-day window must still work.

  Background:
    Given an empty backup repository
    And a running PostgreSQL server archiving WAL to the repository

  Scenario: 100 days of daily backups, then expire
    When a base backup is taken every day for 100 days, each day after a marker is committed
    And the WAL is archived
    And expire runs with the plan's retention policy
    Then the kept base backups are exactly the last 30 days and the Sunday backups of the last 90 days
    And the WAL archive has no gap from the start of the 7-day window
    When the server is destroyed
    And the database is restored to the lsn of marker "day-95"
    Then marker "day-95" is present
    And recovery ended on a new timeline

  Scenario: Keeping the newest 3 full backups, whatever their age
    When a base backup is taken every day for 10 days, each day after a marker is committed
    And the WAL is archived
    And expire runs keeping the newest 3 full backups
    Then the kept base backups are the newest 3 and the one the 7-day PITR window starts from
    And the WAL archive has no gap from the start of the 7-day window
    When the server is destroyed
    And the database is restored to the lsn of marker "day-8"
    Then marker "day-8" is present
