@redis @latest_backup @nightly
Feature: The latest Redis backup restores into an isolated server
  The plan's restore test for the cache and session store: take the latest Redis snapshot from
  the backup store (or the one --pick chooses), check its sha256 and redis-check-rdb, start a
  throwaway redis-server on it and look at its keys. Nothing is written to the store. With a
  repository configured this is production's latest snapshot; on the embedded default a seeded
  Redis server is backed up first.

  Scenario: Restore the latest Redis backup into a throwaway server
    Given the latest Redis backup in the configured repository
    When it is restored into a throwaway Redis server
    Then every Redis database the backup recorded keys in holds keys after the restore
    And the measured RTO is within 30 minutes
