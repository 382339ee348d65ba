#!/usr/bin/env bash
# Build every service image the stack owns, from the local Debian base (no registry).
#
#   scripts/build-images.sh            build all images
#   scripts/build-images.sh inference-api frontend    build only those
#
# Prints each step's duration and the image sizes; exits non-zero on the first failure.
# Idempotent: docker's layer cache makes a re-run with unchanged inputs take seconds.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BASE_IMAGE=mlops/debian-base:13

# name | image tag | context | Dockerfile (relative to the context)
IMAGES=(
  "inference-api|mlops/inference-api:1.0.0|services/inference-api|Dockerfile.inference"
  "frontend|mlops/frontend:1.0.0|services/frontend|Dockerfile.frontend"
  "prometheus|mlops/prometheus:2.53|services/prometheus|Dockerfile"
)

wanted=("$@")
selected() {
  ((${#wanted[@]} == 0)) && return 0
  local w; for w in "${wanted[@]}"; do [ "$w" = "$1" ] && return 0; done
  return 1
}

t_all=$(date +%s)
if ! docker image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
  echo "==> base image $BASE_IMAGE missing: scripts/engine.sh images"
  "$ROOT/scripts/engine.sh" images
fi

built=()
for entry in "${IMAGES[@]}"; do
  IFS='|' read -r name tag context dockerfile <<<"$entry"
  selected "$name" || continue
  if [ ! -f "$ROOT/$context/$dockerfile" ]; then
    if [ "$name" = prometheus ]; then
      echo "==> $name: $context/$dockerfile not present, skipped"
      continue
    fi
    echo "error: $context/$dockerfile is missing" >&2
    exit 1
  fi
  echo "==> $tag ($context/$dockerfile)"
  t0=$(date +%s)
  log=$(mktemp)
  if ! docker build --pull=false -f "$ROOT/$context/$dockerfile" -t "$tag" "$ROOT/$context" >"$log" 2>&1; then
    tail -n 40 "$log" >&2
    rm -f "$log"
    echo "error: building $tag failed" >&2
    exit 1
  fi
  rm -f "$log"
  echo "    done in $(($(date +%s) - t0))s"
  built+=("$tag")
done

echo "==> image sizes"
for tag in "${built[@]}"; do
  printf '    %-28s %s\n' "$tag" "$(docker image inspect -f '{{.Size}}' "$tag" | numfmt --to=si --suffix=B)"
done
echo "all images built in $(($(date +%s) - t_all))s"
