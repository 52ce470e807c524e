@redis @nightly
Feature: Redis snapshot backup and restore
  Redis is backed up with RDB snapshots fetched over the network. The drill proves a snapshot
  brings back every key, value, type and expiry after the server is lost, or into a running
  empty server, and that a server holding data is never overwritten by accident.

  Background:
    Given an empty backup repository
    And a running Redis server with keys of every type, some expiring, and 2000 plain keys

  Scenario: Restore into a new server after the server is lost
    Given the Redis dataset is recorded
    When a Redis backup is taken
    And the Redis server is destroyed
    And the latest Redis backup is restored into a new server
    Then the restored Redis DBSIZE adds up to 2010 keys
    And the sampled keys hold the values recorded before the loss
    And the restored Redis dataset has the same keys, values and types
    And every expiring key still expires, no later than before and within the drill's duration
    And the measured RTO is within 30 minutes

  Scenario: Restore into a running, empty server
    Given the Redis dataset is recorded
    When a Redis backup is taken
    And the Redis server is flushed
    And the latest Redis backup is restored into the running empty server
    Then the restored Redis dataset has the same keys, values and types
    And every expiring key still expires, no later than before and within the drill's duration
    And the measured RTO is within 30 minutes

  Scenario: A server that holds keys is not overwritten
    When a Redis backup is taken
    And a restore of the latest Redis backup into the live server is attempted
    Then the Redis restore is refused with "holds 2010 keys"
    And the live Redis server still holds 2010 keys
