#!/usr/bin/env bash
# Run once by the postgres image on an empty data volume (docker-entrypoint-initdb.d):
# the same role and databases as scripts/stack.sh creates locally, i.e. the login role
# `analytics` owning the warehouse database and the Airflow metadata database.
# Environment (from docker-compose.yaml): LA_DB_PASSWORD, LA_DB_NAME, LA_AIRFLOW_DB_NAME.
set -euo pipefail
: "${LA_DB_PASSWORD:?LA_DB_PASSWORD must be set}"

# psql variables quote the password and names, so any characters are safe.
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
  -v password="$LA_DB_PASSWORD" \
  -v warehouse_db="${LA_DB_NAME:-analytics}" \
  -v airflow_db="${LA_AIRFLOW_DB_NAME:-airflow}" <<'SQL'
CREATE ROLE analytics LOGIN PASSWORD :'password';
CREATE DATABASE :"warehouse_db" OWNER analytics;
CREATE DATABASE :"airflow_db" OWNER analytics;
SQL
