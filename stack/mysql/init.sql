-- Schema of the system under test. Read by the local backend (MariaDB or MySQL 8) and by
-- docker-compose (mounted into /docker-entrypoint-initdb.d). Keep it valid for both.
CREATE DATABASE IF NOT EXISTS inventory;
USE inventory;

-- Dimension used by the Flink job's enrichment: customer_id -> region / segment.
-- Rows are a pure function of customer_id (see harness.enrichment), so the checker can recompute them.
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
  -- Bumped by the workload on every change so each version of a row is distinguishable.
  version INT NOT NULL DEFAULT 1,
  created_at DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
  updated_at DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3) ON UPDATE CURRENT_TIMESTAMP(3)
);

-- Only the grants Debezium documents for its MySQL/MariaDB connectors.
CREATE USER IF NOT EXISTS 'debezium'@'%' IDENTIFIED BY 'dbz';
GRANT SELECT, RELOAD, SHOW DATABASES, REPLICATION SLAVE, REPLICATION CLIENT ON *.* TO 'debezium'@'%';
