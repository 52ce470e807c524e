@media @nightly
Feature: One folder of a large media tree comes back without the rest
  The most common request after an incident: "a user's folder was deleted, bring it back".
  A snapshot of thousands of small files is packed into a handful of objects, and restoring one
  folder fetches only the blobs that folder needs.

  Scenario: A deleted user folder is restored alone from a snapshot of 3000 files
    Given an empty backup repository
    And a media directory of 3000 files in 60 folders
    And the media directory is recorded
    When a media snapshot is taken
    And the folder "users/0007" is deleted locally
    And only the folder "users/0007" is restored from the latest media snapshot
    Then the restored folder "users/0007" is byte-identical and nothing else was restored
    And the latest media snapshot is stored in at most 6 objects
    And the measured RTO is within 2 hours
