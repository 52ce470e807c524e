@postgres @faults @nightly
Feature: Backups survive a failing store, and damage is found by name
  When things break, nothing may be lost and the message must say what happened: a backup that
  could not be stored completely is never listed as complete and leaves no upload behind, a
  damaged backup is refused by name, and two backups never interleave.

  Background:
    Given an empty backup repository behind a fault-injecting proxy
    And a running PostgreSQL server with the shop schema and 3000 users
    And the server holds 12 MB of incompressible data

  Scenario: Failed and dropped uploads are retried, and the backup restores
    Given the row count and content checksum of every table are recorded
    When the next 3 part uploads answer 503 and 2 more are dropped
    And a full backup is attempted
    Then the backup succeeded
    And the store saw 5 injected faults
    When the server is destroyed
    And the latest backup is restored into a new server
    Then every table has the same row count and content checksum as before the loss

  Scenario: A slow store only makes the backup slower
    When every request to the store is slowed down by 200 milliseconds
    And a full backup is attempted
    Then the backup succeeded
    And exactly 1 backup is listed and it verifies

  Scenario: A store that keeps failing: the backup fails cleanly
    When every part upload fails with HTTP 500
    And a full backup is attempted
    Then the backup failed with a message saying "failed after 6 attempts"
    And no backup is listed as complete
    And no multipart upload is left behind

  Scenario: A store that disappears: the backup fails with one clear line
    When the store stops answering
    And a full backup is attempted
    Then the backup failed with a message saying "cannot reach the S3 endpoint"
    And no backup is listed as complete

  Scenario: A flipped bit is found by verify, restore and check
    When a full backup is attempted
    And one byte of the latest base backup is flipped in the store
    Then verify names the damaged object
    And a restore names the damaged object and leaves the target directory empty
    And the deep check reports the damaged object as critical

  Scenario: A deleted object is found by verify, restore and check
    When a full backup is attempted
    And the base tar of the latest backup is deleted from the store
    Then verify names the damaged object
    And a restore names the damaged object and leaves the target directory empty
    And the quick check reports the missing object as critical

  Scenario: Two backups at once never interleave
    When two full backups start at the same time
    Then one completes and the other fails saying "another postgres-base backup is running"
    And exactly 1 backup is listed and it verifies
