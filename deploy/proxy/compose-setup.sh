#!/bin/sh
# docker compose's proxy-setup: what veil-proxy needs before it starts, written once into DIR (a
# volume only proxy-setup and proxy mount) and kept across restarts:
#   token       a token of the service account sql-proxy (scopes decisions, access-events)
#   server.crt  a self-signed certificate for localhost (clients reach the proxy over TLS)
#   server.key  its key
# Runs in Veil's image as root (the volume starts root-owned), then hands DIR to the image's
# user (uid 10001), which the proxy runs as.
set -eu
dir="${1:?usage: compose-setup.sh DIR}"
owner="${PROXY_SETUP_OWNER:-10001}"
umask 077
mkdir -p "$dir"
if [ ! -s "$dir/token" ]; then
  python manage.py token create --service-account sql-proxy --create-account --name veil-proxy \
    --scope decisions --scope access-events >"$dir/token.new"
  mv "$dir/token.new" "$dir/token"
fi
if [ ! -s "$dir/server.key" ] || [ ! -s "$dir/server.crt" ]; then
  openssl req -x509 -newkey rsa:2048 -nodes -days 825 -subj "/CN=localhost" \
    -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
    -keyout "$dir/server.key.new" -out "$dir/server.crt" 2>/dev/null
  mv "$dir/server.key.new" "$dir/server.key"
fi
chown -R "$owner" "$dir"
echo "veil-proxy: token and TLS certificate ready in $dir"
