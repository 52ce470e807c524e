@postgres @pitr @timelines @nightly
Feature: Restores land on exactly the point asked for, across timelines
  After an incident the operator restores to a point in time and the restored server becomes
  production, archiving into the same repository on a new timeline. Every later restore must
  still land on exactly the point asked for: never on an old target carried by a backup, never
  on the wrong one of two histories, and never silently when the archive cannot tell.

  Background:
    Given an empty backup repository
    And a running PostgreSQL server archiving WAL to the repository
    And the shop schema with 100 users
    And a full backup is taken
    And a writer commits a timestamped row every 20 milliseconds

  Scenario: A point-in-time restore leaves nothing behind in later backups
    When marker "safe" is committed
    And a bad change wipes the orders table
    And the WAL is archived
    And the server is destroyed
    And the database is restored to the time of marker "safe" as the new primary
    And a full backup is taken
    And marker "after the pitr" is committed
    And the WAL is archived
    And the server is destroyed
    And the database is restored to the latest point
    Then marker "after the pitr" is present
    And recovery ended on a new timeline
    And no recovery setting from an earlier restore was left in the restored configuration

  Scenario: A restored copy does not archive into its source's repository
    When the latest backup is restored into a new server
    Then the copy does not archive

  Scenario: A copy archiving as a new primary never breaks its source's archiving
    When the latest backup is restored into a new server as a new primary
    And the copy's WAL is archived
    And marker "source" is committed
    And the WAL is archived
    Then the repository holds WAL of timelines "1,2"
    When a restore to the latest point is attempted
    Then the restore is refused with "archiving WAL at the same time"
    When the database is restored to the latest point of timeline 1
    Then marker "source" is present

  Scenario: Back to a point on timeline 2 after a second recovery made timeline 3
    When marker "a" is committed
    And a bad change wipes the orders table
    And the WAL is archived
    And the server is destroyed
    And the database is restored to the time of marker "a" as the new primary
    And marker "b" is committed
    And a bad change wipes the sessions table
    And the WAL is archived
    And the server is destroyed
    And the database is restored to the time of marker "b" as the new primary
    And marker "c" is committed
    And the WAL is archived
    And the server is destroyed
    Then the repository holds WAL of timelines "1,2,3"
    When a restore to the time of marker "b" is attempted
    Then the restore is refused with "--target-timeline 2 or 3"
    When the database is restored to the time of marker "b" on timeline 2
    Then marker "b" is present
    And marker "c" is absent
    And recovery ended on a new timeline

  Scenario: A timeline whose history file is missing is a gap, never followed silently
    When marker "safe" is committed
    And a bad change wipes the orders table
    And the WAL is archived
    And the server is destroyed
    And the database is restored to the time of marker "safe" as the new primary
    And marker "after the pitr" is committed
    And the WAL is archived
    And the history file of timeline 2 is deleted from the repository
    And a restore to the latest point is attempted
    Then the restore is refused with "00000002.history is missing"
    And the refusal is an integrity failure

  Scenario: A target past the last commit ends with PostgreSQL's reason, not a day-long wait
    When the WAL is archived
    And a restore to a transaction id that was never assigned is waited for
    Then recovery fails with "before configured recovery target was reached"
