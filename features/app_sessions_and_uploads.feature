@app
Feature: An application's sessions and uploads come back after both are lost
  The Redis keys and the uploaded files are the application's own: a table of keys in the
  feature, a directory of files beside it. No Python.

  Background:
    Given an empty backup repository

  @redis
  Scenario: Session keys written in a table come back with their values and expiry
    Given a running Redis server holding these keys:
      | key           | value   | ttl seconds |
      | session:alice | token-a | 3600        |
      | session:bob   | token-b |             |
      | feature:dark  | on      |             |
    And the Redis dataset is recorded
    When a Redis backup is taken
    And the Redis server is destroyed
    And the latest Redis backup is restored into a new server
    Then the restored Redis DBSIZE adds up to 3 keys
    And the restored Redis dataset has the same keys, values and types

  @media
  Scenario: The application's upload directory comes back byte for byte
    Given the media directory "app/uploads"
    And the media directory is recorded
    When a media snapshot is taken
    And the media directory is lost
    And the latest media snapshot is restored
    Then the restored media holds 3 files, each matching its snapshot hash
    And every file is byte-identical, with its mode and modification time
