-- Schema of the system under test. Read by the local backend (MariaDB or MySQL 8) and by
-- docker-compose (mounted into /docker-entrypoint-initdb.d). Keep it valid for both.
CREATE DATABASE IF NOT EXISTS inventory;
USE inventory;

-- The dimension the Flink job enriches orders with (captured by Debezium too; changes during a run).
CREATE TABLE IF NOT EXISTS customers (
  customer_id INT NOT NULL PRIMARY KEY,
  customer_name VARCHAR(128) NOT NULL,
  region VARCHAR(16) NOT NULL,
  segment VARCHAR(16) NOT NULL
);

CREATE TABLE IF NOT EXISTS orders (
  order_id BIGINT NOT NULL PRIMARY KEY,
  customer_id INT NOT NULL,
  product VARCHAR(128) NOT NULL,
  quantity INT NOT NULL,
  unit_price DECIMAL(10,2) NOT NULL,
  status VARCHAR(16) NOT NULL,
  -- Event time chosen by the workload (on-time, out-of-order or late): drives watermarks and partitions.
  event_time DATETIME(3) NOT NULL,
  -- An ordinary column: writers may or may not bump it (nothing identifies a change by it).
  version INT NOT NULL DEFAULT 1,
  created_at DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
  updated_at DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3) ON UPDATE CURRENT_TIMESTAMP(3)
);

-- The source ticks: an event updates these rows every second, so every partition of the topic gets a record
-- each second and the job's watermarks advance while the tables rest (Debezium's heartbeat.action.query runs
-- only when binlog events arrive, so it cannot start the clock on an idle database).  The server runs with
-- event_scheduler=ON.  Ids 1..8: their keys ({"id":N}) hash to every partition of a 3-partition topic
-- (1 -> 0, 2 -> 1, 4 -> 2).
CREATE TABLE IF NOT EXISTS cdc_heartbeat (
  id INT NOT NULL PRIMARY KEY,
  beat_at DATETIME(6) NOT NULL
);
INSERT IGNORE INTO cdc_heartbeat (id, beat_at) VALUES
  (1, NOW(6)), (2, NOW(6)), (3, NOW(6)), (4, NOW(6)), (5, NOW(6)), (6, NOW(6)), (7, NOW(6)), (8, NOW(6));
CREATE EVENT IF NOT EXISTS cdc_heartbeat_tick ON SCHEDULE EVERY 1 SECOND
  DO UPDATE inventory.cdc_heartbeat SET beat_at = NOW(6);

-- One row per workload transaction, written first in it: the ground-truth reader finds the marker's
-- txn_id in the binlog and so names the history's transaction (see harness.workload).
CREATE TABLE IF NOT EXISTS workload_txns (txn_id BIGINT NOT NULL PRIMARY KEY, worker INT NOT NULL);

-- Only the grants Debezium documents for its MySQL/MariaDB connectors.
CREATE USER IF NOT EXISTS 'debezium'@'%' IDENTIFIED BY 'dbz';
GRANT SELECT, RELOAD, SHOW DATABASES, REPLICATION SLAVE, REPLICATION CLIENT ON *.* TO 'debezium'@'%';
