@postgres @restored_server @nightly
Feature: A restored server passes the restore checklist
  The plan's isolated restore test: a server started from a restored data directory is checked
  before anyone relies on it. With DRILL_TARGET_DSN set (the postgres-test service of
  docker-compose.restore-test.yml) the drill checks that server and touches nothing else; on the
  embedded default it first restores the latest backup of a seeded source into a throwaway one.

  Scenario: The restored server passes the checklist
    Given the restored PostgreSQL server to check
    When an app is started against the restored database
    Then the restored server accepts connections
    And these tables have at least these rows:
      | table    | rows |
      | users    | 1    |
      | sessions | 1    |
    And no foreign key has orphans
    And every index is valid and passes amcheck
    And its health endpoint answers 200
