@postgres @full_restore @nightly
Feature: Complete data loss on PostgreSQL
  The recovery plan promises that when the database server is lost entirely, the latest
  base backup brings it back within 4 hours (RTO), with every table as it was at backup time.

  Background:
    Given an empty backup repository
    And a running PostgreSQL server with the shop schema and 2000 users

  Scenario: Restore the latest base backup after the server is destroyed
    Given the runbook gives 30 minutes to restore and 45 minutes to verify the data
    And the row count and content checksum of every table are recorded
    And the indexes are recorded
    When a full backup is taken
    And the server is destroyed
    And the latest backup is restored into a new server
    Then the restored server accepts connections
    And every table has the same row count and content checksum as before the loss
    And every index recorded before the loss is present
    And every index is valid and passes amcheck
    And no foreign key has orphans
    And the measured RTO is within 4 hours
    And the restore met the runbook's timeline

  Scenario: The newest of several backups is the one restored
    When a full backup is taken
    And 500 more users sign up
    And the row count and content checksum of every table are recorded
    And a full backup is taken
    And the server is destroyed
    And the latest backup is restored into a new server
    Then the restored backup is the second one taken
    And every table has the same row count and content checksum as before the loss
    And the measured RTO is within 4 hours

  Scenario: A backup interrupted before its manifest is never restored
    When a full backup is taken
    And the row count and content checksum of every table are recorded
    And 500 more users sign up
    And a full backup is interrupted before its manifest is written
    And the server is destroyed
    And the latest backup is restored into a new server
    Then the restored backup is the first one taken
    And every table has the same row count and content checksum as before the loss
    And the measured RTO is within 4 hours
