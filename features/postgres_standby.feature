@postgres @standby @nightly
Feature: A standby rebuilt from the repository
  A replica is added or repaired from the latest backup instead of a new base backup from the
  primary (`pg restore --standby --primary-conninfo ...`): it replays the archive, then streams
  from the primary the operator names, never from settings found in the backup, and follows it.

  Scenario: A standby restored from the repository follows the primary
    Given an empty backup repository
    And a running PostgreSQL server archiving WAL to the repository
    And the shop schema with 100 users
    And a full backup is taken
    When marker "before-rebuild" is committed
    And a standby of the server is restored from the latest backup, streaming from it
    Then the standby is in recovery, streaming from the primary
    And marker "before-rebuild" arrives on the standby within 30 seconds
    When marker "after-rebuild" is committed
    Then marker "after-rebuild" arrives on the standby within 30 seconds
