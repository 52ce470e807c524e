@postgres @second_repository @nightly
Feature: A second repository (3-2-1)
  Two copies of every backup and every WAL segment, in two stores: `[repository.2]` receives
  what `[repository]` does, one stream written to both. When the first store is lost whole (an
  account closed, a region gone, a bucket emptied), the database comes back from the second.

  Scenario: The first repository is lost whole, and the database is restored from the second
    Given an empty backup repository
    And a second, empty backup repository
    And a running PostgreSQL server archiving WAL to both repositories
    And the shop schema with 150 users
    When a full backup is taken into both repositories
    And 50 more users sign up
    And marker "after-backup" is committed
    And the row count and content checksum of every table are recorded
    And the WAL is archived in both repositories
    And the first repository is deleted whole
    And the server is destroyed
    And the latest backup is restored from the second repository into a new server
    Then every table has the same row count and content checksum as before the loss
    And marker "after-backup" is present
    And the measured RTO is within 4 hours
