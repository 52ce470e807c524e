@postgres @archive_verify @nightly
Feature: The WAL archive is verified before a restore needs it
  A segment missing or damaged in the archive stops every point-in-time restore through it.
  `pg verify --archive` (and `check --deep`) finds it ahead of time: every segment present from
  the oldest backup to the newest WAL, every object matching the sha256 recorded when archived,
  and a nightly run reads only what is new or changed.

  Scenario: A deleted and a bit-flipped segment are named before any restore
    Given an empty backup repository
    And a running PostgreSQL server archiving WAL to the repository
    And the shop schema with 100 users
    And a full backup is taken
    When 4 more WAL segments are archived
    Then the WAL archive verifies
    When one archived segment is deleted and another has a bit flipped
    Then verifying the WAL archive names both before any restore
