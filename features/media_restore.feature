@media @nightly
Feature: Media files (user uploads) backup and restore
  The plan promises that lost file storage comes back within 2 hours. Media snapshots store
  each file once, by content; restoring one brings every file back byte for byte, and a file
  deleted or damaged locally is never removed from older snapshots.

  Background:
    Given an empty backup repository
    And a media directory with nested folders, binary files, a 20 MB file and unicode names

  Scenario: Every file comes back byte-identical after the storage is lost
    Given the media directory is recorded
    When a media snapshot is taken
    And the media directory is lost
    And the latest media snapshot is restored
    Then the restored media holds 23 files, each matching its snapshot hash
    And every file is byte-identical, with its mode and modification time
    And the measured RTO is within 2 hours

  Scenario: A second snapshot uploads only what changed
    When a media snapshot is taken
    And 3 files are added and 1 file is changed
    And a media snapshot is taken
    Then the second snapshot stored only the new and changed content

  Scenario: A file deleted or corrupted locally is still in the older snapshot
    When the media directory is recorded
    And a media snapshot is taken
    And a file is deleted and another is corrupted locally
    And a media snapshot is taken
    And the first media snapshot is restored
    Then every file is byte-identical, with its mode and modification time
