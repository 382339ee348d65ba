#!/usr/bin/env bash
# Build every service image the stack owns, from the local Debian base (no registry).
#
#   scripts/build-images.sh            build all images
#   scripts/build-images.sh inference-api frontend    build only those
#   scripts/build-images.sh --vendor-only              fetch the vendored web assets and wheels, build nothing
#   scripts/build-images.sh --relock                   regenerate services/inference-api/requirements.lock
#
# The API's Python dependencies are wheels pinned by sha256 in
# services/inference-api/requirements.lock (from requirements.in). `pip download
# --require-hashes` on the host fetches them from PyPI for the image's Python (CPython 3.13,
# manylinux x86_64) into services/inference-api/vendor/wheelhouse/ (git-ignored); the image
# installs them with `pip install --no-index --require-hashes` (containers here cannot
# check PyPI's certificate, and the build needs no network at all). A wheel whose bytes
# differ from its recorded hash fails the build.
#
# Swagger UI for the API's /docs is vendored, not loaded from a CDN (clinics are offline):
# `npm pack` on the host fetches the pinned swagger-ui-dist release (npm checks the
# registry's integrity hash), this script checks the tarball against the sha512 and sha256
# recorded below (a changed tarball fails the build), and extracts only what /docs uses
# into services/inference-api/vendor/swagger-ui/ (git-ignored), which the Dockerfile copies.
#
# Prints each step's duration and the image sizes; exits non-zero on the first failure.
# Idempotent: docker's layer cache makes a re-run with unchanged inputs take seconds.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BASE_IMAGE=mlops/debian-base:13

SWAGGER_UI_VERSION=5.35.0
SWAGGER_UI_SHA512=U06rpMtW9V3XPGOBeamTUSr0Z09jMX4IJuANpE/EZbAhw0G8CgwrzU4YmXkn/h0wCDNsXdGarTNNHC3sU8yVUQ==
SWAGGER_UI_SHA256=1b8e891893404ea4c3558b6a87e2a3e494e7eedba41168c2ece5800a391a6ea6
SWAGGER_UI_FILES=(swagger-ui-bundle.js swagger-ui.css favicon-32x32.png LICENSE NOTICE)
SWAGGER_UI_DIR=$ROOT/services/inference-api/vendor/swagger-ui

# Fetch, verify and extract Swagger UI unless the extracted files are already this version.
vendor_swagger_ui() {
  local stamp="$SWAGGER_UI_DIR/.version" f ok=1
  for f in "${SWAGGER_UI_FILES[@]}"; do [ -s "$SWAGGER_UI_DIR/$f" ] || ok=0; done
  if ((ok)) && [ "$(cat "$stamp" 2>/dev/null)" = "$SWAGGER_UI_VERSION $SWAGGER_UI_SHA256" ]; then
    return 0
  fi
  echo "==> swagger-ui-dist $SWAGGER_UI_VERSION (npm pack) -> ${SWAGGER_UI_DIR#"$ROOT"/}"
  command -v npm >/dev/null || { echo "error: npm is needed on the host to fetch swagger-ui-dist" >&2; exit 1; }
  local tmp tgz
  tmp=$(mktemp -d)
  VENDOR_TMP=$tmp
  (cd "$tmp" && npm pack --silent "swagger-ui-dist@$SWAGGER_UI_VERSION" >/dev/null) || {
    echo "error: npm pack swagger-ui-dist@$SWAGGER_UI_VERSION failed" >&2; exit 1; }
  tgz="$tmp/swagger-ui-dist-$SWAGGER_UI_VERSION.tgz"
  local got512 got256
  got512=$(openssl dgst -sha512 -binary "$tgz" | base64 -w0)
  got256=$(sha256sum "$tgz" | cut -d' ' -f1)
  if [ "$got512" != "$SWAGGER_UI_SHA512" ] || [ "$got256" != "$SWAGGER_UI_SHA256" ]; then
    echo "error: swagger-ui-dist-$SWAGGER_UI_VERSION.tgz changed: sha512-$got512 sha256 $got256," >&2
    echo "       recorded sha512-$SWAGGER_UI_SHA512 sha256 $SWAGGER_UI_SHA256" >&2
    exit 1
  fi
  tar -xzf "$tgz" -C "$tmp" "${SWAGGER_UI_FILES[@]/#/package/}"
  rm -rf "$SWAGGER_UI_DIR"
  mkdir -p "$SWAGGER_UI_DIR"
  for f in "${SWAGGER_UI_FILES[@]}"; do install -m 0644 "$tmp/package/$f" "$SWAGGER_UI_DIR/$f"; done
  echo "$SWAGGER_UI_VERSION $SWAGGER_UI_SHA256" >"$SWAGGER_UI_DIR/.version"
  rm -rf "$tmp"
}
WHEELHOUSE=$ROOT/services/inference-api/vendor/wheelhouse
LOCK=$ROOT/services/inference-api/requirements.lock
# The image's interpreter and platform: Debian 13's CPython 3.13 on x86_64 (glibc 2.41).
WHEEL_TARGET=(--only-binary=:all: --python-version 3.13 --implementation cp --abi cp313
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64
  --platform manylinux_2_5_x86_64 --platform manylinux1_x86_64)
host_pip() {
  if [ -x "$ROOT/.venv/bin/pip" ]; then "$ROOT/.venv/bin/pip" --disable-pip-version-check "$@"
  else python3 -m pip --disable-pip-version-check "$@"; fi
}

# Download the locked wheels unless the wheelhouse already holds exactly them (pip checks
# every file against the lock's sha256 either way when it installs in the image).
vendor_wheels() {
  local stamp="$WHEELHOUSE/.lock-sha256" want
  want=$(sha256sum "$LOCK" | cut -d' ' -f1)
  [ "$(cat "$stamp" 2>/dev/null)" = "$want" ] && return 0
  echo "==> wheels of ${LOCK#"$ROOT"/} (pip download --require-hashes) -> ${WHEELHOUSE#"$ROOT"/}"
  rm -rf "$WHEELHOUSE"
  mkdir -p "$WHEELHOUSE"
  host_pip download -q --require-hashes --no-deps "${WHEEL_TARGET[@]}" -r "$LOCK" -d "$WHEELHOUSE" \
    2> >(grep -v "is ignored: it is neither" >&2) || { echo "error: pip download of the locked wheels failed" >&2; exit 1; }
  echo "$want" >"$stamp"
}

# requirements.in -> requirements.lock: resolve for the image's Python, hash every wheel.
relock() {
  local tmp; tmp=$(mktemp -d)
  VENDOR_TMP=$tmp
  host_pip download -q "${WHEEL_TARGET[@]}" -r "$ROOT/services/inference-api/requirements.in" -d "$tmp" \
    2> >(grep -v "is ignored: it is neither" >&2)
  {
    echo "# Generated by scripts/build-images.sh --relock from requirements.in: every wheel the image"
    echo "# installs (CPython 3.13, manylinux x86_64), pinned by sha256. Do not edit by hand."
    echo
    local whl name version
    for whl in "$tmp"/*.whl; do
      name=$(basename "$whl" | cut -d- -f1 | tr '_.' '--' | tr 'A-Z' 'a-z')
      version=$(basename "$whl" | cut -d- -f2)
      printf '%s==%s \\\n    --hash=sha256:%s\n' "$name" "$version" "$(sha256sum "$whl" | cut -d' ' -f1)"
    done
  } >"$LOCK"
  rm -rf "$tmp"
  echo "wrote ${LOCK#"$ROOT"/}"
}

VENDOR_TMP=
trap 'rm -rf "${VENDOR_TMP:-/nonexistent}"' EXIT

if [ "${1:-}" = --vendor-only ]; then
  vendor_swagger_ui
  vendor_wheels
  exit 0
fi
if [ "${1:-}" = --relock ]; then
  relock
  exit 0
fi

# name | image tag | context | Dockerfile (relative to the context). The context is services/
# for all of them: their build stages share services/slim-root.sh.
IMAGES=(
  "inference-api|mlops/inference-api:1.0.0|services|inference-api/Dockerfile.inference"
  "frontend|mlops/frontend:1.0.0|services|frontend/Dockerfile.frontend"
  "prometheus|mlops/prometheus:2.53|services|prometheus/Dockerfile"
  "alertmanager|mlops/alertmanager:0.28|services|alertmanager/Dockerfile"
  "node-exporter|mlops/node-exporter:1.9|services|node-exporter/Dockerfile"
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

# Two builds at a time: most of a build is apt and dpkg inside the container, waiting on
# the network or the disk as often as on a core. Each one's output is printed once all
# are done, in the order above.
JOBS=${MLOPS_BUILD_JOBS:-2}
out=$(mktemp -d)
trap 'rm -rf "${VENDOR_TMP:-/nonexistent}" "$out"' EXIT
build_one() {
  local tag=$1 context=$2 dockerfile=$3 t0 log
  t0=$(date +%s)
  log=$(mktemp)
  echo "==> $tag ($context/$dockerfile)"
  if ! docker build --pull=false -f "$ROOT/$context/$dockerfile" -t "$tag" "$ROOT/$context" >"$log" 2>&1; then
    tail -n 40 "$log"
    rm -f "$log"
    echo "error: building $tag failed"
    return 1
  fi
  rm -f "$log"
  echo "    done in $(($(date +%s) - t0))s"
}

names=()
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
  if [ "$name" = inference-api ]; then vendor_swagger_ui; vendor_wheels; fi
  while (($(jobs -rp | wc -l) >= JOBS)); do wait -n || true; done
  (if build_one "$tag" "$context" "$dockerfile" >"$out/$name.log" 2>&1; then echo 0; else echo 1; fi >"$out/$name.rc") &
  names+=("$name|$tag")
done
wait

built=()
failed=0
for entry in "${names[@]}"; do
  IFS='|' read -r name tag <<<"$entry"
  cat "$out/$name.log"
  if [ "$(cat "$out/$name.rc")" = 0 ]; then built+=("$tag"); else failed=1; fi
done
((failed == 0)) || { echo "error: an image failed to build (above)" >&2; exit 1; }

echo "==> image sizes"
total=0
for tag in "${built[@]}"; do
  size=$(docker image inspect -f '{{.Size}}' "$tag")
  total=$((total + size))
  printf '    %-28s %s\n' "$tag" "$(numfmt --to=si --suffix=B "$size")"
done
printf '    %-28s %s\n' "together" "$(numfmt --to=si --suffix=B "$total")"
echo "all images built in $(($(date +%s) - t_all))s"
