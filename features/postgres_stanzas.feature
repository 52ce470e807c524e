@postgres @stanzas @nightly
Feature: Several PostgreSQL clusters in one configuration (stanzas)
  One host, one configuration file, one repository, several clusters: each is a stanza
  (`[stanza.NAME]` with its dsn) kept under its own prefix, `--stanza NAME` on every command,
  and `run-all` backs them all up. A restore of one stanza never reads another's backups.

  Scenario: Two clusters backed up by one run-all, each restored from its own stanza
    Given an empty backup repository
    And PostgreSQL clusters "main" (120 users) and "reports" (40 users) configured as stanzas of one repository
    When run-all backs up every stanza
    Then each stanza lists one backup, of its own cluster
    When every stanza's server is destroyed
    Then each stanza restores its own cluster with every table as recorded
