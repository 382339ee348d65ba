#!/bin/sh
# Render the nginx configuration from the environment, then run nginx in the foreground.
#
#   API_UPSTREAM        where /api/ goes (default http://inference-api:8000: the Compose
#                       service and the Kubernetes Service share that name)
#   NGINX_WORKERS       worker processes (default 2: the catalogue grants half a core)
#   LISTEN_PORT         the port nginx listens on (default 8080; the image's healthcheck
#                       follows it)
#
# Arguments: none -> run nginx; `check` -> render and `nginx -t`; anything else -> exec it.
set -eu

TEMPLATE=/etc/mlops-frontend/nginx.conf.template
CONF_DIR=/tmp/nginx
CONF=$CONF_DIR/nginx.conf
API_UPSTREAM=${API_UPSTREAM:-http://inference-api:8000}
NGINX_WORKERS=${NGINX_WORKERS:-2}
LISTEN_PORT=${LISTEN_PORT:-8080}

die() { echo "frontend: $*" >&2; exit 2; }

case "${1:-run}" in
  run | check) ;;
  *) exec "$@" ;;
esac

# http://host[:port] only: a path would change how nginx builds the upstream URI.
printf '%s' "$API_UPSTREAM" | grep -Eq '^https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?$' ||
  die "API_UPSTREAM=$API_UPSTREAM must look like http://host:port (no path)"
printf '%s' "$NGINX_WORKERS" | grep -Eq '^([1-9][0-9]?|auto)$' ||
  die "NGINX_WORKERS=$NGINX_WORKERS must be a number from 1 to 99, or auto"
printf '%s' "$LISTEN_PORT" | grep -Eq '^[1-9][0-9]{0,4}$' && [ "$LISTEN_PORT" -le 65535 ] ||
  die "LISTEN_PORT=$LISTEN_PORT must be a port number from 1 to 65535"

# nginx's resolver does not apply resolv.conf's search list. In Kubernetes a short
# Service name (no dot) is qualified with the pod's first search domain
# (<namespace>.svc.<cluster domain>); Docker's embedded DNS answers short names itself.
scheme=${API_UPSTREAM%%://*}
hostport=${API_UPSTREAM#*://}
host=${hostport%%:*}
case "$host" in
  *.*) ;;
  *)
    search=$(awk '$1 == "search" { print $2; exit }' /etc/resolv.conf 2>/dev/null || true)
    case "$search" in
      *.svc.*) API_UPSTREAM="$scheme://$host.$search${hostport#"$host"}" ;;
    esac
    ;;
esac

RESOLVERS=$(awk '$1 == "nameserver" { if ($2 ~ /:/) printf "[%s] ", $2; else printf "%s ", $2 }' /etc/resolv.conf 2>/dev/null || true)
[ -n "$RESOLVERS" ] || die "no nameserver in /etc/resolv.conf: nginx could not resolve $API_UPSTREAM"

mkdir -p "$CONF_DIR"
sed -e "s|@API_UPSTREAM@|$API_UPSTREAM|g" -e "s|@RESOLVERS@|$RESOLVERS|g" -e "s|@WORKERS@|$NGINX_WORKERS|g" \
  -e "s|@LISTEN_PORT@|$LISTEN_PORT|g" \
  "$TEMPLATE" >"$CONF"
echo "frontend: port $LISTEN_PORT, /api/ -> $API_UPSTREAM (resolver $RESOLVERS)" >&2

if [ "${1:-run}" = check ]; then
  exec nginx -e stderr -c "$CONF" -t
fi
exec nginx -e stderr -c "$CONF" -g 'daemon off;'
