@postgres @object_lock @nightly
Feature: Immutable backups: S3 Object Lock, and a rollback after an attack
  Someone holding the bucket's own keys (ransomware, a wrong script) tries to destroy the
  backups. Under Object Lock the store refuses to delete any version of a base backup, a WAL
  segment or a drill report. What such an attacker can still do, hide objects behind delete
  markers and overwrite them, `storage rollback` undoes from the versions the lock kept, and
  the database restores whole.

  Scenario: An attacker with the bucket's keys cannot destroy a locked backup
    Given an empty backup repository in a bucket with Object Lock
    And a running PostgreSQL server archiving WAL to the repository
    And the shop schema with 100 users
    And a full backup is taken
    When the row count and content checksum of every table are recorded
    And the WAL is archived
    And an attacker with the bucket's keys deletes every version of the base backup, a WAL segment and a drill report
    Then the store refused every deletion and every object still reads back whole
    When the attacker hides every object behind a delete marker and overwrites the base backup
    Then the repository lists no backup
    When the repository is rolled back to just before the attack
    And the server is destroyed
    And the latest backup is restored into a new server
    Then every table has the same row count and content checksum as before the loss
