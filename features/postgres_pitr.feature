@postgres @pitr @nightly
Feature: Point-in-time recovery after database corruption
  The recovery plan promises that after a bad change (a wrong DELETE, a dropped table) the
  database comes back as it was just before it, within 1 hour (RTO), from the latest base
  backup plus the continuous WAL archive.

  Background:
    Given an empty backup repository
    And a running PostgreSQL server archiving WAL to the repository
    And the shop schema with 300 users
    And a full backup is taken
    And a writer commits a timestamped row every 20 milliseconds

  Scenario Outline: Recover to just before a bad change, by <kind>
    When the orders table is recorded
    And marker "safe" is committed
    And a bad change wipes the orders table
    And the WAL is archived
    And the server is destroyed
    And the database is restored to the <kind> of marker "safe"
    Then recovery ended on a new timeline
    And marker "safe" is present
    And the orders table is as recorded
    And the measured RTO is within 1 hour

    Examples:
      | kind           |
      | time           |
      | lsn            |
      | restore point  |
      | transaction id |

  Scenario: A target before the first backup is refused before anything is touched
    When a restore over the live server to 1 hour before the first backup is attempted
    Then the restore is refused with "before the recoverable window"
    And the live server still runs with its data untouched

  Scenario: A gap in the WAL archive is found before anything is touched
    When marker "one" is committed
    And the WAL is archived
    And marker "two" is committed
    And the WAL is archived
    And an archived WAL segment after the backup is deleted from the repository
    And a restore over the live server to the latest point is attempted
    Then the restore is refused with "gap"
    And the live server still runs with its data untouched
