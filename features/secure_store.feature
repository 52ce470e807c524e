@postgres @pitr @secure_store @nightly
Feature: A client-side encrypted repository
  With encryption = "aes-256-gcm" the store only ever sees ciphertext: base backups, WAL and
  manifests alike. Point-in-time recovery must work through it all the same, with the key
  reaching archive_command and restore_command through the server's environment.

  Scenario: Point-in-time recovery from an encrypted repository
    Given an empty client-side encrypted backup repository
    And a running PostgreSQL server archiving WAL to the repository
    And the shop schema with 100 users
    And a full backup is taken
    When the orders table is recorded
    And marker "safe" is committed
    And a bad change wipes the orders table
    And the WAL is archived
    And the server is destroyed
    And the database is restored to the time of marker "safe"
    Then marker "safe" is present
    And the orders table is as recorded
    And the store holds nothing but ciphertext
