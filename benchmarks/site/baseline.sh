#!/usr/bin/env bash
# Hand-written baseline of a fresh edge converge (issue 10: a fresh `site.yml` converge takes at
# most 1.5 times this). The irreducible work, done over SSH as the deploy user with sudo, the
# way an expert would script it for one fresh Debian 13 host:
#
#   1. one tar of the rendered files copied to the host;
#   2. Debian's security suite, one `apt-get update`, one `apt-get install` of the packages the
#      roles install (hardening, docker, edge_stack's zstd), the service user, the files put in
#      place, then the services the roles (re)start: sysctl, sshd, sysstat, fail2ban, Docker;
#   3. the image bundle (the controller's zstd archive, as role edge_stack ships it) streamed
#      into `docker load`;
#   4. `docker compose up --wait` until every service is healthy.
#
# FILES_TAR holds the files a host converged by site.yml ends up with (benchmarks/site/run.py
# takes them from the host site.yml converged in the same run): configuration, Compose project,
# monitoring configs, model release, PKI, run metrics. BUNDLE is the archive site.yml loads.
# Both are made before the timed part, as site.yml renders nothing the shell would not have to
# write and finds its bundle in the controller's cache.
#
# What it leaves out, and why: the input and host checks (the script trusts its inputs), facts,
# python3-requests (only Ansible's community.docker modules need it), the bundle's sha256 check
# on the host (SSH protects the stream; site.yml copies the archive first, then checks it), the
# check that the loaded image IDs are the controller's, the rollout and health probes beyond
# `up --wait`, the run and drift metrics (their end state is in FILES_TAR), pull mode's clean-up
# (nothing to remove on a fresh host).
#
# Usage: baseline.sh HOST KEY FILES_TAR BUNDLE [DEPLOY_USER]
set -euo pipefail

if [ "$#" -lt 4 ]; then
    echo "usage: $0 HOST KEY FILES_TAR BUNDLE [DEPLOY_USER]" >&2
    exit 2
fi
host=$1 key=$2 files=$3 bundle=$4 user=${5:-mlops-deploy}
compose_dir=/etc/mlops/compose

ctl_dir=$(mktemp -d)
# One SSH connection for every step, as site.yml has with ControlPersist.
ssh_opts=(-i "$key" -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR
    -o ControlMaster=auto -o "ControlPath=$ctl_dir/%C" -o ControlPersist=60s)
# The remote commands are meant to be expanded here, on the controller.
# shellcheck disable=SC2029
remote() { ssh "${ssh_opts[@]}" "$user@$host" "$@"; }
cleanup() {
    ssh "${ssh_opts[@]}" -O exit "$user@$host" 2>/dev/null || true
    rm -rf "$ctl_dir"
}
trap cleanup EXIT

step() { printf '%s %s\n' "$(date +%T)" "$*" >&2; }

step "copy the rendered files"
remote 'cat > /tmp/site-files.tar' <"$files"

step "packages, users, files, services"
remote 'sudo bash -s' <<'EOF'
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
# Debian's security suite first (role hardening adds it on hosts without one), so one update.
tar -tf /tmp/site-files.tar | { grep '^etc/apt/sources\.list\.d/.' || true; } \
    | xargs -r tar -C / -xpf /tmp/site-files.tar --numeric-owner
apt-get update -qq
# hardening: audit and protection, fail2ban, unattended-upgrades; docker: Engine, CLI, Compose
# (no recommends, as both roles); edge_stack: zstd for the bundle.
apt-get install -y -qq --no-install-recommends \
    libpam-tmpdir libpam-pwquality debsums apt-show-versions sysstat \
    fail2ban python3-systemd nftables unattended-upgrades \
    docker.io docker-cli docker-compose zstd >/dev/null
# The service user with the uid of the images (hardening_service_uid), locked deploy user.
groupadd --system --gid 10001 mlops
useradd --system --uid 10001 --gid mlops --home-dir /var/lib/mlops --no-create-home \
    --shell /usr/sbin/nologin mlops
usermod --lock mlops-deploy
chage --maxdays -1 mlops-deploy
# Every file, directory and link site.yml writes, with its owner and mode.
tar -C / -xpf /tmp/site-files.tar --numeric-owner
rm -f /tmp/site-files.tar
systemctl daemon-reload
# The keys of the network namespace only, as hardening_sysctl_apply `auto` does in a container:
# `sysctl --system` would write the whole-kernel keys (fs.*, kernel.*) into the machine's
# kernel that every test host shares, under the tests running beside the benchmark.
grep -E '^net\.ipv[46]\.' /etc/sysctl.d/90-mlops-hardening.conf | sysctl --quiet --load=- >/dev/null
systemctl reload ssh
systemctl enable --now sysstat fail2ban 2>/dev/null
systemctl reload fail2ban
# daemon.json changed after the package's first start.
systemctl reset-failed docker.service
systemctl restart docker
EOF

step "load the image bundle"
remote 'zstd -dcq | sudo docker load --quiet >/dev/null' <"$bundle"

step "start the stack and wait until it is healthy"
remote "sudo sh -c 'cd $compose_dir && docker compose up --detach --wait --wait-timeout 600 2>&1 | tail -n 3'"
step "done"
