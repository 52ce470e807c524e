@postgres @pitr @table_restore @nightly
Feature: Single table recovery
  The recovery plan promises that one damaged or dropped table comes back as it was before the
  damage within 30 minutes (RTO), losing at most 15 minutes (RPO), without touching the rest
  of the live database.

  Background:
    Given an empty backup repository
    And a running PostgreSQL server archiving WAL to the repository
    And the shop schema with 300 users
    And a full backup is taken
    And a writer commits a timestamped row every 20 milliseconds

  Scenario: A dropped table comes back next to the live data
    When the row count and content checksum of every table are recorded
    And marker "safe" is committed
    And the orders table is dropped
    And the WAL is archived
    And the orders table is restored from the time of marker "safe" as "orders_back"
    Then table "orders_back" holds the recorded content of "orders"
    And the tables "users, sessions" are as recorded
    And the measured RTO is within 30 minutes

  Scenario: A wiped table is restored beside it, and the damaged table is left alone
    When the row count and content checksum of every table are recorded
    And marker "safe" is committed
    And a bad change wipes the orders table
    And the WAL is archived
    And the orders table is restored from the lsn of marker "safe" as "orders_before"
    Then table "orders_before" holds the recorded content of "orders"
    And table "orders" still has 0 rows
    And the tables "users, sessions" are as recorded
    And the measured RTO is within 30 minutes

  Scenario: A wiped table is replaced in place, and rows referencing it stay
    When the row count and content checksum of every table are recorded
    And marker "safe" is committed
    And a bad change wipes the users table
    And the WAL is archived
    And the users table is restored from the time of marker "safe" replacing it
    Then table "users" holds the recorded content of "users"
    And the tables "sessions, orders" are as recorded
    And the measured RTO is within 30 minutes

  Scenario: A table whose name needs quoting comes back under its own name
    Given a table public."Order Items.v2" with 250 rows
    When the row count and content checksum of every table are recorded
    And marker "safe" is committed
    And the public."Order Items.v2" table is dropped
    And the WAL is archived
    And the public."Order Items.v2" table is restored from the time of marker "safe" replacing it
    Then table "public."Order Items.v2"" holds the recorded content of "public."Order Items.v2""
    And the tables "users, sessions, orders" are as recorded
