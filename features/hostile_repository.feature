@hostile @faults @nightly
Feature: A repository someone else has written to
  Anyone who can write to the bucket (the backup role can, by design) may have. Whatever a tar
  member, a media entry or a manifest says, a restore never writes outside its target and
  expire never deletes what retention keeps; what cannot be read is refused, not guessed at.

  Background:
    Given an empty backup repository
    And a directory outside every restore target holding a sentinel file

  @postgres
  Scenario: A forged base backup cannot write outside the restore target
    Given a running PostgreSQL server with the shop schema and 50 users
    And a full backup is taken
    When the latest base backup's tar is replaced by one that links outside and writes through it
    And the latest base backup is restored into a new directory
    Then the restore is refused with "symbolic link"
    And nothing outside the restore target changed

  @media
  Scenario: A forged media snapshot cannot write outside the restore target
    Given a media directory with nested folders, binary files, a 2 MB file and unicode names
    When a media snapshot is taken
    And the latest media snapshot gets entries that link outside and write through the link
    And the latest media snapshot is restored into a new directory
    Then the restore is refused with "outside the snapshot"
    And nothing outside the restore target changed

  @postgres
  Scenario: A planted manifest cannot make expire delete the WAL the window needs
    Given a running PostgreSQL server archiving WAL to the repository
    And the shop schema with 50 users
    And a full backup is taken
    When marker "one" is committed
    And the WAL is archived
    And a full backup is taken
    And a copy of the newest base backup's manifest is planted with a new id, a week back, starting at LSN FF/0
    And the WAL archive is counted
    And expire runs a month later with a one-day PITR window
    Then expire is refused with "expire deleted nothing"
    And every archived WAL segment is still there
    And every base backup taken is still listed

  @postgres
  Scenario: A manifest that cannot be read is never cleaned up as an incomplete backup
    Given a running PostgreSQL server with the shop schema and 50 users
    And a full backup is taken
    And a full backup is taken
    When the newest base backup's manifest is overwritten with bytes that do not parse
    And the repository's objects are counted
    And expire runs a month later with a one-day PITR window
    Then expire is refused with "cannot be read"
    And the repository holds every object it held before
