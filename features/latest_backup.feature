@postgres @latest_backup @nightly
Feature: The latest base backup restores and passes the restore checklist
  The plan's restore test: take the latest backup from the backup store, restore it into an
  isolated server with all archived WAL, and run the restore checklist against it. Nothing is
  written to the store. With a repository configured (backup-engine drill --config FILE) this
  is production's latest backup; on the embedded default a seeded source is backed up first.

  Background:
    Given the latest PostgreSQL base backup in the configured repository

  Scenario: Restore the latest backup into an isolated server and run the checklist
    When it is restored into a throwaway server with WAL to the end of the archive
    And an app is started against the restored database
    Then the restored server accepts connections
    And these tables have at least these rows:
      | table    | rows |
      | users    | 1    |
      | sessions | 1    |
      | orders   | 1    |
    And no foreign key has orphans
    And every index is valid and passes amcheck
    And these queries return these values:
      | query                                              | value |
      | SELECT count(*) FROM users WHERE email IS NULL     | 0     |
      | SELECT count(*) FROM orders WHERE total_cents < 0  | 0     |
    And its health endpoint answers 200
    And the measured RTO is within 4 hours
