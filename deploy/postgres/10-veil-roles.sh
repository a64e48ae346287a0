#!/bin/sh
# First start of the database only (docker-entrypoint-initdb.d): Veil's two roles.
# veil_owner owns the database and runs migrations; veil_app (web, workers, beat) owns nothing and
# gets its grants from `manage.py audit db-roles` after every migrate (docs/operations.md).
set -eu
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
  -v owner_password="$VEIL_OWNER_DB_PASSWORD" -v app_password="$VEIL_APP_DB_PASSWORD" <<'SQL'
CREATE ROLE veil_owner LOGIN PASSWORD :'owner_password';
CREATE ROLE veil_app LOGIN PASSWORD :'app_password';
ALTER DATABASE veil OWNER TO veil_owner;
ALTER SCHEMA public OWNER TO veil_owner;
SQL
