#!/usr/bin/env bash
# The local test engine: one script used by the README's commands, the tests and CI.
#
#   scripts/engine.sh toolchain   Debian packages + the pinned Python toolchain in .venv
#   scripts/engine.sh docker      a Docker Engine that answers (installs/starts dockerd)
#   scripts/engine.sh images      test-host images and the slim base image, from Debian
#   scripts/engine.sh all         all three: the Debian packages first, then the Python
#                                 toolchain and the engine with its images side by side
#
# No image registry is reachable here: every image is built from Debian's packages with
# mmdebstrap and `docker import`. Images already present with the same recipe are reused.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${MLOPS_VENV:-$ROOT/.venv}
# checkov pins libraries that clash with ansible-lint's: it gets a venv of its own.
CHECKOV_VENV=${MLOPS_CHECKOV_VENV:-$ROOT/.venv-checkov}
CHECKOV_VERSION=3.3.30
MIRROR=${MLOPS_DEBIAN_MIRROR:-http://deb.debian.org/debian}

# Debian packages the tooling needs on the machine running the tests.
HOST_PACKAGES=(docker.io mmdebstrap python3-venv prometheus nginx-light chromium wrk
  iproute2 openssh-client zstd testssl.sh)

# Test hosts: systemd, python3 for Ansible, python3-apt for apt's check mode, sshd for the
# hardening checks. Base image: the smallest Debian 13 the service images start from.
TESTHOST_PACKAGES=systemd,systemd-sysv,dbus,python3,python3-apt,sudo,openssh-server,iproute2,procps,ca-certificates,gnupg,curl,apt-transport-https
BASE_PACKAGES=ca-certificates

step_started=0
step() { step_started=$(date +%s); printf '==> %s\n' "$*"; }
done_step() { printf '    done in %ss\n' "$(($(date +%s) - step_started))"; }

apt_install() {
  local missing=()
  for p in "$@"; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p"); done
  if ((${#missing[@]})); then
    echo "    installing: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # policy-rc.d keeps apt from starting nginx/prometheus daemons on the machine itself.
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    rm -f /usr/sbin/policy-rc.d
  fi
}

host_packages() {
  step "Debian packages for the toolchain"
  apt_install "${HOST_PACKAGES[@]}"
  # npm fetches the pinned Swagger UI assets for the API image; a machine with Node.js has it.
  command -v npm >/dev/null || apt_install npm
  done_step
}

python_toolchain() {
  step "Python toolchain in $VENV (requirements.txt)"
  [ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check -r "$ROOT/requirements.txt" 2> >(grep -v "is ignored: it is neither" >&2)
  # Collections come with the pinned ansible package; this confirms the ranges offline.
  (cd "$ROOT" && "$VENV/bin/ansible-galaxy" collection install -r collections/requirements.yml -p collections >/dev/null)
  # The checkout is the collection mlops.infra: linked into the project's collections path so
  # that playbooks, roles and filters resolve by their full names (mlops.infra.edge_stack...).
  mkdir -p "$ROOT/collections/ansible_collections/mlops"
  ln -sfn ../../.. "$ROOT/collections/ansible_collections/mlops/infra"
  done_step
}

checkov_toolchain() {
  step "checkov $CHECKOV_VERSION in $CHECKOV_VENV"
  [ -x "$CHECKOV_VENV/bin/python" ] || python3 -m venv "$CHECKOV_VENV"
  "$CHECKOV_VENV/bin/pip" install -q --disable-pip-version-check "checkov==$CHECKOV_VERSION" 2> >(grep -v "is ignored: it is neither" >&2)
  done_step
}

cmd_toolchain() { host_packages && python_toolchain && checkov_toolchain; }

engine_answers() { docker version --format '{{.Server.Version}}' >/dev/null 2>&1; }

cmd_docker() {
  step "Docker Engine"
  if ! engine_answers; then
    command -v dockerd >/dev/null || apt_install docker.io
    if [ -d /run/systemd/system ]; then
      systemctl start docker
    else
      # Its own session: the daemon outlives the shell (and process group) that started it.
      setsid nohup dockerd >/var/log/mlops-dockerd.log 2>&1 </dev/null &
    fi
    for _ in $(seq 1 60); do engine_answers && break; sleep 1; done
    engine_answers || { echo "dockerd did not answer; see /var/log/mlops-dockerd.log" >&2; exit 1; }
  fi
  echo "    engine $(docker version --format '{{.Server.Version}}') answers"
  done_step
}

# build_rootfs IMAGE SUITE PACKAGES CMD: mmdebstrap a root filesystem and import it.
# The recipe's hash is stored as a label so a changed package list rebuilds the image.
build_rootfs() {
  local image=$1 suite=$2 packages=$3 cmd=$4
  local recipe; recipe=$(printf '%s|%s|%s|%s' "$suite" "$packages" "$cmd" "$MIRROR" | sha256sum | cut -c1-16)
  step "image $image (Debian $suite)"
  if [ "$(docker image inspect -f '{{index .Config.Labels "mlops.recipe"}}' "$image" 2>/dev/null)" = "$recipe" ]; then
    echo "    reused (recipe $recipe)"
  else
    mmdebstrap --quiet --variant=minbase --include="$packages" \
      --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*.bin' \
      "$suite" - "$MIRROR" |
      docker import --change "LABEL mlops.recipe=$recipe" --change "CMD $cmd" - "$image" >/dev/null
    echo "    built $(docker image inspect -f '{{.Size}}' "$image" | numfmt --to=iec)"
  fi
  done_step
}

cmd_images() {
  cmd_docker
  build_rootfs mlops-test/debian-systemd:13 trixie "$TESTHOST_PACKAGES" '["/lib/systemd/systemd"]'
  build_rootfs mlops-test/debian-systemd:12 bookworm "$TESTHOST_PACKAGES" '["/lib/systemd/systemd"]'
  build_rootfs mlops/debian-base:13 trixie "$BASE_PACKAGES" '["/bin/bash"]'
}

# side_by_side FUNCTION...: runs each in a subshell of its own at the same time, then prints
# their output one after the other; fails when any of them failed.
side_by_side() {
  local out rc=0 i names=("$@") pids=()
  out=$(mktemp -d)
  for i in "${names[@]}"; do
    ("$i") >"$out/$i" 2>&1 &
    pids+=($!)
  done
  for i in "${!names[@]}"; do
    wait "${pids[$i]}" || rc=1
    cat "$out/${names[$i]}"
  done
  rm -rf "$out"
  return $rc
}

case "${1:-all}" in
  toolchain) cmd_toolchain ;;
  docker) cmd_docker ;;
  images) cmd_images ;;
  all)
    t0=$(date +%s)
    host_packages
    # pip's downloads and mmdebstrap's are mostly waits on the network: side by side they
    # take about as long as the longest (the two venvs took 152 s and 77 s one after the
    # other on a fresh machine, the test host images 164 s).
    side_by_side python_toolchain checkov_toolchain cmd_images
    echo "engine ready in $(($(date +%s) - t0))s"
    ;;
  *) echo "usage: $0 {toolchain|docker|images|all}" >&2; exit 2 ;;
esac
