#!/bin/sh
# Render the nginx configuration from the environment, then run nginx in the foreground.
#
# Environment (each value is checked; a bad one stops with a message naming the variable):
#   API_UPSTREAM        where /api/ goes (default http://inference-api:8000: the Compose
#                       service and the Kubernetes Service share that name). The file
#                       /etc/mlops-frontend/live/api_upstream overrides it when it exists
#                       (one line, same form): the switch of a zero-downtime rollout.
#   NGINX_WORKERS       worker processes (default 2: the catalogue grants half a core)
#   LISTEN_PORT         the plain HTTP port (default 8080; the image's healthcheck follows it)
#   TLS_CERT_FILE       PEM certificate (with its chain) and PEM key, e.g. mounted secrets:
#   TLS_KEY_FILE        set both to serve HTTPS on TLS_PORT; LISTEN_PORT then answers
#                       /health and redirects everything else to HTTPS. Neither: plain HTTP
#                       on LISTEN_PORT only (Kubernetes terminates TLS at the Ingress).
#   TLS_PORT            the HTTPS port (default 8443)
#   TLS_PUBLIC_PORT     the HTTPS port clients reach, for the redirect's URL (default
#                       TLS_PORT; 443 is left out of the URL)
#   TLS_CLIENT_CA_FILE  PEM CA bundle of client certificates: nginx asks for one (optional)
#                       and passes X-Client-Verify / X-Client-DN to the API
#   TLS_CRL_FILE        PEM certificate revocation list of the site CA (default
#                       /etc/mlops-frontend/tls/ca.crl when that file exists): served in DER,
#                       as application/pkix-crl, on plain HTTP at /crl/site-ca.crl (the CRL
#                       distribution point of the site's certificates; never redirected), and
#                       with TLS_CLIENT_CA_FILE client certificates are checked against it
#                       (nginx's ssl_crl: every CA of that bundle then needs its CRL in the
#                       file, and an expired CRL fails every client certificate).
#   EXPOSE_API_DOCS     1 serves /api/docs and /api/openapi.json through the frontend
#                       (default 0: 404)
#   EXPOSE_API_METRICS  1 serves /api/metrics through the frontend (default 0: 404)
#
# Commands:
#   run (default)  render /tmp/nginx/nginx.conf, then run nginx in the foreground
#   check          render into /tmp/nginx/nginx.conf.check (never the file a running nginx
#                  uses), then `nginx -t` it
#   reload         render again (environment, live upstream file, CRL) into a new file and
#                  `nginx -t` it; only when it passes, put it in place and reload the running
#                  nginx (graceful: old workers finish the requests in flight), then wait for
#                  the new workers and print the upstream in use. Otherwise the running
#                  configuration is left untouched and the exit status is non-zero (2: a bad
#                  value, 1: nginx refused). Run it in the container, as its user:
#                    docker exec mlops-frontend frontend-entrypoint reload
#   anything else  exec it
set -eu

TEMPLATE=/etc/mlops-frontend/nginx.conf.template
LIVE_UPSTREAM=/etc/mlops-frontend/live/api_upstream
CONF_DIR=/tmp/nginx
CONF=$CONF_DIR/nginx.conf
PID_FILE=$CONF_DIR/nginx.pid # the template's `pid`

API_UPSTREAM=${API_UPSTREAM:-http://inference-api:8000}
NGINX_WORKERS=${NGINX_WORKERS:-2}
LISTEN_PORT=${LISTEN_PORT:-8080}
TLS_CERT_FILE=${TLS_CERT_FILE:-}
TLS_KEY_FILE=${TLS_KEY_FILE:-}
TLS_PORT=${TLS_PORT:-8443}
TLS_PUBLIC_PORT=${TLS_PUBLIC_PORT:-$TLS_PORT}
TLS_CLIENT_CA_FILE=${TLS_CLIENT_CA_FILE:-}
TLS_CRL_FILE=${TLS_CRL_FILE:-}
CRL_DEFAULT=/etc/mlops-frontend/tls/ca.crl
CRL_DER=$CONF_DIR/site-ca.crl # what /crl/site-ca.crl serves: the CRL in DER
EXPOSE_API_DOCS=${EXPOSE_API_DOCS:-0}
EXPOSE_API_METRICS=${EXPOSE_API_METRICS:-0}

cmd=${1:-run}
case "$cmd" in
  run | check | reload) ;;
  *) exec "$@" ;;
esac

untouched=""
[ "$cmd" != reload ] || untouched=" (reload refused: the running configuration is left untouched)"
die() { echo "frontend: $*$untouched" >&2; exit 2; }
fail() { echo "frontend: $*" >&2; exit 1; }

NL='
'
# matches REGEX VALUE: the whole value (one line) matches the extended regex.
matches() {
  case "$2" in *"$NL"*) return 1 ;; esac
  printf '%s' "$2" | grep -Eq "$1"
}
# http://host[:port] only: a path would change how nginx builds the upstream URI.
upstream_ok() {
  matches '^https?://[A-Za-z0-9.-]+(:[1-9][0-9]{0,4})?$' "$1" || return 1
  case "${1#*://}" in *:*) [ "${1##*:}" -le 65535 ] ;; esac
}
check_port() { # check_port NAME VALUE
  matches '^[1-9][0-9]{0,4}$' "$2" && [ "$2" -le 65535 ] || die "$1=$2 must be a port number from 1 to 65535"
}
# is_true NAME VALUE: succeeds for a true value, fails for a false one, dies otherwise.
is_true() {
  case "$2" in
    1 | true | True | TRUE | yes | Yes | YES | on | On | ON) return 0 ;;
    0 | false | False | FALSE | no | No | NO | off | Off | OFF | "") return 1 ;;
    *) die "$1=$2 must be a boolean: 1 or 0 (true/false, yes/no, on/off)" ;;
  esac
}
check_file() { # check_file NAME VALUE: a path nginx can take as is, readable by this user
  matches '^/[A-Za-z0-9._/-]+$' "$2" || die "$1=$2 must be an absolute path (letters, digits, . _ - /)"
  [ -f "$2" ] && [ -r "$2" ] || die "$1=$2 is not a file that uid $(id -u) can read (not mounted, or its mode)"
}

upstream_ok "$API_UPSTREAM" || die "API_UPSTREAM=$API_UPSTREAM must look like http://host:port (no path)"
matches '^([1-9][0-9]?|auto)$' "$NGINX_WORKERS" || die "NGINX_WORKERS=$NGINX_WORKERS must be a number from 1 to 99, or auto"
check_port LISTEN_PORT "$LISTEN_PORT"
check_port TLS_PORT "$TLS_PORT"
check_port TLS_PUBLIC_PORT "$TLS_PUBLIC_PORT"

flags=""
if is_true EXPOSE_API_DOCS "$EXPOSE_API_DOCS"; then flags="$flags DOCS"; fi
if is_true EXPOSE_API_METRICS "$EXPOSE_API_METRICS"; then flags="$flags METRICS"; fi

redirect_port=""
if [ -n "$TLS_CERT_FILE" ] || [ -n "$TLS_KEY_FILE" ]; then
  [ -n "$TLS_CERT_FILE" ] && [ -n "$TLS_KEY_FILE" ] ||
    die "TLS_CERT_FILE and TLS_KEY_FILE go together: set both (HTTPS on TLS_PORT) or neither (plain HTTP); got TLS_CERT_FILE='$TLS_CERT_FILE' TLS_KEY_FILE='$TLS_KEY_FILE'"
  check_file TLS_CERT_FILE "$TLS_CERT_FILE"
  check_file TLS_KEY_FILE "$TLS_KEY_FILE"
  [ "$TLS_PORT" != "$LISTEN_PORT" ] || die "TLS_PORT=$TLS_PORT must differ from LISTEN_PORT=$LISTEN_PORT"
  flags="$flags TLS"
  if [ -n "$TLS_CLIENT_CA_FILE" ]; then
    check_file TLS_CLIENT_CA_FILE "$TLS_CLIENT_CA_FILE"
    flags="$flags CLIENT_CA"
  fi
  if [ "$TLS_PUBLIC_PORT" != 443 ]; then redirect_port=":$TLS_PUBLIC_PORT"; fi
elif [ -n "$TLS_CLIENT_CA_FILE" ]; then
  die "TLS_CLIENT_CA_FILE is set without TLS_CERT_FILE and TLS_KEY_FILE: client certificates need HTTPS"
fi

# The site CA's CRL: named, or the file Ansible delivers beside ca.crt when it is there.
crl_from=TLS_CRL_FILE
if [ -z "$TLS_CRL_FILE" ] && [ -f "$CRL_DEFAULT" ]; then
  TLS_CRL_FILE=$CRL_DEFAULT
  crl_from=default
fi
if [ -n "$TLS_CRL_FILE" ]; then
  check_file TLS_CRL_FILE "$TLS_CRL_FILE"
  [ "$(grep -c -e '^-----BEGIN X509 CRL-----' "$TLS_CRL_FILE" || true)" = 1 ] &&
    [ "$(grep -c -e '^-----END X509 CRL-----' "$TLS_CRL_FILE" || true)" = 1 ] ||
    die "TLS_CRL_FILE=$TLS_CRL_FILE ($crl_from) must hold one PEM CRL (-----BEGIN X509 CRL-----)"
  flags="$flags CRL"
fi
# crl_der FILE: the PEM CRL decoded to DER into FILE (RFC 5280: an HTTP distribution point
# serves DER).
crl_der() {
  [ -n "$TLS_CRL_FILE" ] || return 0
  sed -n '/^-----BEGIN X509 CRL-----/,/^-----END X509 CRL-----/{/^-----/d;p;}' "$TLS_CRL_FILE" |
    base64 -d >"$1" 2>/dev/null && [ -s "$1" ] ||
    die "TLS_CRL_FILE=$TLS_CRL_FILE ($crl_from) is not a PEM CRL: its base64 does not decode"
}

# The live upstream file (a host directory mounted read-only at /etc/mlops-frontend/live)
# wins over API_UPSTREAM: a rollout writes it, then runs `reload`.
upstream_from=API_UPSTREAM
if [ -e "$LIVE_UPSTREAM" ] || [ -L "$LIVE_UPSTREAM" ]; then
  [ -f "$LIVE_UPSTREAM" ] && [ -r "$LIVE_UPSTREAM" ] ||
    die "$LIVE_UPSTREAM exists but is not a file that uid $(id -u) can read"
  lines=$(grep -c '[^[:space:]]' "$LIVE_UPSTREAM" || true)
  live=$(sed -n 's/^[[:space:]]*//; s/[[:space:]]*$//; /./{p;q;}' "$LIVE_UPSTREAM")
  [ "$lines" = 1 ] && upstream_ok "$live" ||
    die "$LIVE_UPSTREAM must hold one line like http://host:port (no path), not '$live' ($lines non-empty lines)"
  API_UPSTREAM=$live
  upstream_from=$LIVE_UPSTREAM
fi

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

# render FILE: the template with its #@if blocks resolved (flags above) and its @NAME@
# placeholders replaced (R_NAME below; comment lines are copied as they are).
render() {
  R_API_UPSTREAM=$API_UPSTREAM R_RESOLVERS=$RESOLVERS R_WORKERS=$NGINX_WORKERS \
    R_LISTEN_PORT=$LISTEN_PORT R_TLS_PORT=$TLS_PORT R_TLS_REDIRECT_PORT=$redirect_port \
    R_TLS_CERT_FILE=$TLS_CERT_FILE R_TLS_KEY_FILE=$TLS_KEY_FILE R_TLS_CLIENT_CA_FILE=$TLS_CLIENT_CA_FILE \
    R_TLS_CRL_FILE=$TLS_CRL_FILE R_CRL_DER_FILE=$CRL_DER \
    awk -v flags=" $flags " '
      function expand(s,   out, i, j, name) {
        out = ""
        while ((i = index(s, "@")) > 0 && (j = index(substr(s, i + 1), "@")) > 0) {
          name = substr(s, i + 1, j - 1)
          if (name !~ /^[A-Z_]+$/) { out = out substr(s, 1, i); s = substr(s, i + 1); continue }
          if (!(("R_" name) in ENVIRON)) {
            printf "frontend: %s:%d: unknown placeholder @%s@\n", FILENAME, FNR, name > "/dev/stderr"
            bad = 1
            exit 3
          }
          out = out substr(s, 1, i - 1) ENVIRON["R_" name]
          s = substr(s, i + j + 1)
        }
        return out s
      }
      $1 == "#@if" { f = $2; want = !sub(/^!/, "", f); on[++depth] = ((index(flags, " " f " ") > 0) == want); next }
      $1 == "#@else" { on[depth] = !on[depth]; next }
      $1 == "#@end" { depth--; next }
      { for (k = 1; k <= depth; k++) if (!on[k]) next }
      /^[ \t]*#/ { print; next }
      { print expand($0) }
      END {
        if (!bad && depth != 0) { print "frontend: unbalanced #@if/#@end in " FILENAME > "/dev/stderr"; exit 3 }
      }
    ' "$TEMPLATE" >"$1"
}

describe() {
  if [ -n "$TLS_CERT_FILE" ]; then
    mode="HTTPS on port $TLS_PORT (client certificates: ${TLS_CLIENT_CA_FILE:-not asked}), HTTP on port $LISTEN_PORT: /health and a redirect to https://<host>$redirect_port"
  else
    mode="port $LISTEN_PORT"
  fi
  docs=404
  metrics=404
  case " $flags " in *" DOCS "*) docs=proxied ;; esac
  case " $flags " in *" METRICS "*) metrics=proxied ;; esac
  crl="no CRL"
  [ -z "$TLS_CRL_FILE" ] || crl="/crl/site-ca.crl from $TLS_CRL_FILE"
  echo "frontend: $mode, /api/ -> $API_UPSTREAM (from $upstream_from; resolver $RESOLVERS), /api/docs $docs, /api/metrics $metrics, $crl"
}

mkdir -p "$CONF_DIR"

if [ "$cmd" = check ]; then
  crl_der "$CRL_DER.check"
  rm -f "$CRL_DER.check"
  render "$CONF.check"
  describe >&2
  exec nginx -e stderr -c "$CONF.check" -t
fi
if [ "$cmd" = run ]; then
  crl_der "$CRL_DER"
  render "$CONF"
  describe >&2
  exec nginx -e stderr -c "$CONF" -g 'daemon off;'
fi

# ---------------------------------------------------------------- reload

running_upstream() { sed -n 's/^[[:space:]]*set \$api_upstream "\(.*\)";$/\1/p' "$CONF" 2>/dev/null | head -n 1; }
children() { cat "/proc/$1/task/$1/children" 2>/dev/null || true; }

# One reload at a time; a lock left by a reload that was killed is taken over.
lock=$CONF_DIR/reload.lock
if ! mkdir "$lock" 2>/dev/null; then
  other=$(cat "$lock/pid" 2>/dev/null || true)
  if [ -n "$other" ] && kill -0 "$other" 2>/dev/null; then
    fail "another reload (pid $other) is running; try again when it is done"
  fi
  rm -rf "$lock"
  mkdir "$lock" || fail "cannot take the reload lock $lock"
fi
echo $$ >"$lock/pid"
trap 'rm -rf "$lock" "$CONF.new" "$CONF.test" "$CRL_DER.new"' EXIT

master=$(cat "$PID_FILE" 2>/dev/null || true)
if [ -z "$master" ] || ! kill -0 "$master" 2>/dev/null; then
  fail "no nginx runs in this container (no live master in $PID_FILE): nothing to reload"
fi

crl_der "$CRL_DER.new"
render "$CONF.new"
if ! nginx -e stderr -c "$CONF.new" -t 2>"$CONF.test"; then
  cat "$CONF.test" >&2
  fail "nginx -t refuses the new configuration: the running one is left untouched (/api/ -> $(running_upstream))"
fi
# The CRL nginx -t accepted (ssl_crl) is the one /crl/site-ca.crl serves from now on.
if [ -n "$TLS_CRL_FILE" ]; then mv -f "$CRL_DER.new" "$CRL_DER"; fi

before=" $(children "$master" | tr '\n' ' ') "
cp "$CONF" "$CONF.prev"
mv -f "$CONF.new" "$CONF"
if ! nginx -e stderr -c "$CONF" -s reload 2>"$CONF.test"; then
  cat "$CONF.test" >&2
  mv -f "$CONF.prev" "$CONF"
  fail "could not signal nginx (master $master): the previous configuration file is restored"
fi

# The master starts new workers once it has applied the configuration (the old ones finish
# their requests, then exit); without new workers it kept the previous configuration.
if [ -r "/proc/$master/task/$master/children" ]; then
  new=""
  tries=0
  while [ -z "$new" ]; do
    for pid in $(children "$master"); do
      case "$before" in *" $pid "*) ;; *) new="$new $pid" ;; esac
    done
    [ -n "$new" ] && break
    tries=$((tries + 1))
    if [ "$tries" -gt 100 ]; then
      mv -f "$CONF.prev" "$CONF"
      fail "nginx (master $master) started no worker with the new configuration within 10 s, so it keeps the previous one (the container's log says why); the previous configuration file is restored"
    fi
    sleep 0.1
  done
  workers="new workers:$new"
  # The old workers accept no new connection once they show "shutting down" (they only finish
  # the requests they hold, however long): wait for that, so that whatever is sent after this
  # command returns meets the new configuration.
  tries=0
  while :; do
    busy=""
    for pid in $before; do
      title=$({ tr '\0' ' ' <"/proc/$pid/cmdline"; } 2>/dev/null || true)
      case "$title" in "" | *"shutting down"*) ;; *) busy="$busy $pid" ;; esac
    done
    [ -n "$busy" ] || break
    tries=$((tries + 1))
    if [ "$tries" -gt 100 ]; then
      echo "frontend: old workers$busy still accept connections after 10 s (they should stop soon)" >&2
      break
    fi
    sleep 0.1
  done
else
  workers="signalled master $master"
fi

describe
msg="frontend: reloaded ($workers): /api/ -> $API_UPSTREAM (from $upstream_from)"
echo "$msg"
# The same line in the container's log (PID 1's stderr), for whoever reads it later.
(echo "$msg" >/proc/1/fd/2) 2>/dev/null || true
