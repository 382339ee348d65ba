#!/usr/bin/env bash
# The README's first command: the whole edge stack on a throwaway local edge host.
#
#   bash scripts/local-edge.sh        set up, start the local edge host, run site.yml on it
#   bash scripts/local-edge.sh down   remove the local edge host and everything in it
#
# The edge host is a Debian 13 systemd container on this machine's Docker Engine
# (inventories/local). site.yml hardens it, installs Docker Engine inside it, renders the
# monitoring configuration and deploys the stack with images delivered as bundles, exactly
# as on a clinic's edge box. Its ports are published on 127.0.0.1 only.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
HOST=mlops-local-edge
FRONTEND_PORT=${MLOPS_LOCAL_FRONTEND_PORT:-8080}
HTTPS_PORT=${MLOPS_LOCAL_HTTPS_PORT:-8443}
API_PORT=${MLOPS_LOCAL_API_PORT:-8000}
PROMETHEUS_PORT=${MLOPS_LOCAL_PROMETHEUS_PORT:-9090}
KEY_DIR=$ROOT/build/local-edge

if [ "${1:-up}" = down ]; then
  python3 scripts/testhost.py remove "$HOST"
  exit 0
fi

t0=$(date +%s)
bash scripts/engine.sh all
bash scripts/build-images.sh
# shellcheck disable=SC1091
source .venv/bin/activate

echo "==> local edge host $HOST"
# The deploy user's key for this throwaway host (hardening accepts keys only).
mkdir -p "$KEY_DIR"
[ -f "$KEY_DIR/id_ed25519" ] || ssh-keygen -q -t ed25519 -N '' -C "mlops-local-edge" -f "$KEY_DIR/id_ed25519"
python scripts/testhost.py start "$HOST" --image mlops-test/debian-systemd:13 \
  --publish "127.0.0.1:$FRONTEND_PORT:8080" --publish "127.0.0.1:$HTTPS_PORT:8443" --publish "127.0.0.1:$API_PORT:8000" \
  --publish "127.0.0.1:$PROMETHEUS_PORT:9090"

echo "==> ansible-playbook site.yml -i inventories/local"
t1=$(date +%s)
ansible-playbook site.yml -i inventories/local
echo "    site.yml done in $(($(date +%s) - t1))s"

echo "==> smoke check: a prediction through the frontend"
python scripts/smoke.py "https://localhost:$HTTPS_PORT" --cacert "$KEY_DIR/pki/ca.crt" \
  --api-key-file "$KEY_DIR/pki/api-key-site"

cat <<EOT

The edge stack is up on $HOST (in $(($(date +%s) - t0))s):
  frontend (web UI)   https://localhost:$HTTPS_PORT/  (site CA: $KEY_DIR/pki/ca.crt;
                      http://127.0.0.1:$FRONTEND_PORT/ redirects there)
  API key             $KEY_DIR/pki/api-key-site (header X-API-Key)
  inference API docs  http://127.0.0.1:$API_PORT/docs
  Prometheus          http://127.0.0.1:$PROMETHEUS_PORT/
  Grafana             left out here (no Grafana image can be had offline); its files are in
                      /etc/mlops/grafana on the host: docker exec $HOST ls -R /etc/mlops/grafana
Run it again: nothing changes (changed=0). Remove it: bash scripts/local-edge.sh down
EOT
