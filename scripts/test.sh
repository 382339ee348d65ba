#!/usr/bin/env bash
# Runs every test of the collection, on a fresh machine as on a prepared one:
#
#   bash scripts/test.sh            everything: setup, lint, pytest, every Molecule scenario
#   bash scripts/test.sh lint       linters only
#   bash scripts/test.sh pytest     pytest suites only (tests/)
#   bash scripts/test.sh molecule [scenario ...]
#                                   Molecule scenarios (role names, or edge and fleet for molecule/<name>)
#
# Setup (toolchain, Docker Engine, images) is done by scripts/engine.sh and
# scripts/build-images.sh, which reuse what is already there.
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
export ANSIBLE_FORCE_COLOR=0 PY_COLORS=0 ANSIBLE_NOCOLOR=1 NO_COLOR=1
LOGS=${MLOPS_TEST_LOGS:-$ROOT/artifacts/logs}
mkdir -p "$LOGS"

# Everything after setup: the linters, the pytest suites, the project-level Molecule scenarios
# (molecule/: the whole edge site, the fleet) and the role scenarios, the longest first so
# that two lanes end close together (seconds in a fresh-clone run here: edge_stack 980, edge
# 735, pytest 674, fleet 628, hardening 557, ..., lint 100).
ALL_JOBS=(edge_stack edge pytest fleet hardening k3s pull docker model_release lint k8s_topology prometheus alertmanager grafana)
ALL_SCENARIOS=()
for job in "${ALL_JOBS[@]}"; do [[ $job == lint || $job == pytest ]] || ALL_SCENARIOS+=("$job"); done
# Jobs run this many at a time: much of their time is apt downloads and waits, so two at
# once finish sooner on two cores. Each scenario has its own container names
# (MLOPS_MOLECULE_PREFIX); the pytest suites name theirs apart and publish random ports.
JOBS=${MLOPS_TEST_JOBS:-2}

passed=0 failed=0
failures=()
summary=()

run_step() {
  local name=$1; shift
  local t0; t0=$(date +%s)
  printf '\n==> %s\n' "$name"
  if "$@"; then
    passed=$((passed + 1)); summary+=("PASS  $(printf '%5ss' $(($(date +%s) - t0)))  $name")
  else
    failed=$((failed + 1)); failures+=("$name"); summary+=("FAIL  $(printf '%5ss' $(($(date +%s) - t0)))  $name")
  fi
}

setup() {
  bash scripts/engine.sh all && bash scripts/build-images.sh
}

lint() {
  local rc=0
  yamllint --strict . || rc=1
  ansible-lint --profile production --offline || rc=1
  ruff check . || rc=1
  ruff format --check . || rc=1
  return $rc
}

# Test files go to PYTEST_WORKERS processes (pytest-xdist), a whole file to one worker: most
# tests wait on ansible-playbook or a container, and files share module-scoped fixtures.
PYTEST_WORKERS=${MLOPS_PYTEST_WORKERS:-2}

pytest_suites() {
  python -m pytest -p no:cacheprovider tests/ roles/docker/tests --ignore=tests/molecule -ra --durations=25 \
    -n "$PYTEST_WORKERS" --dist loadfile
}

molecule_scenario() {
  local scenario=$1 log="$LOGS/molecule-$1.log" rc
  if [ -d "molecule/$scenario" ]; then
    (MLOPS_MOLECULE_PREFIX=ci molecule test -s "$scenario") >"$log" 2>&1
  else
    (cd "roles/$scenario" && MLOPS_MOLECULE_PREFIX="ci-$scenario" molecule test) >"$log" 2>&1
  fi
  rc=$?
  # The recap tells what ran; on failure the end of the log tells why.
  grep -E '(➜ (converge|idempotence|verify):|[0-9]+ passed|[0-9]+ failed)' "$log" | tail -n 6
  ((rc == 0)) || tail -n 80 "$log"
  return $rc
}

# job_title JOB: how the summary names a job.
job_title() {
  case "$1" in
    lint) echo "lint: yamllint, ansible-lint (production), ruff" ;;
    pytest) echo "pytest: templates, services, policies, parity" ;;
    *) echo "molecule: $1" ;;
  esac
}

run_job() {
  case "$1" in
    lint) lint ;;
    pytest) pytest_suites ;;
    *) molecule_scenario "$1" ;;
  esac
}

# Runs the jobs (lint, pytest, scenario names) JOBS at a time; each one's outcome and
# duration land in a status file, read back in the order given so that the output and the
# summary do not depend on which finished first.
run_jobs() {
  local status_dir; status_dir=$(mktemp -d)
  for s in "$@"; do
    while (($(jobs -rp | wc -l) >= JOBS)); do wait -n || true; done
    (
      t0=$(date +%s)
      if run_job "$s" >"$status_dir/$s.out" 2>&1; then r=PASS; else r=FAIL; fi
      echo "$r $(($(date +%s) - t0))" >"$status_dir/$s.status"
    ) &
  done
  wait
  local title
  for s in "$@"; do
    read -r r secs <"$status_dir/$s.status"
    title=$(job_title "$s")
    printf '\n==> %s (%s, %ss)\n' "$title" "$r" "$secs"
    cat "$status_dir/$s.out"
    summary+=("$r  $(printf '%5ss' "$secs")  $title")
    if [ "$r" = PASS ]; then passed=$((passed + 1)); else failed=$((failed + 1)); failures+=("$title"); fi
  done
  rm -rf "$status_dir"
}

what=${1:-all}
[ $# -gt 0 ] && shift

case "$what" in
  all|setup|lint|pytest|molecule) ;;
  *) echo "usage: $0 [all|setup|lint|pytest|molecule [scenario ...]]" >&2; exit 2 ;;
esac

t_start=$(date +%s)
if [ "$what" = all ] || [ "$what" = setup ]; then
  run_step "setup: toolchain, Docker Engine, images" setup
  if ((failed)); then echo "setup failed; nothing else can run" >&2; exit 1; fi
fi
# shellcheck disable=SC1091
source "$ROOT/.venv/bin/activate"
case "$what" in
  all) run_jobs "${ALL_JOBS[@]}" ;;
  lint) run_step "$(job_title lint)" lint ;;
  pytest) run_step "$(job_title pytest)" pytest_suites ;;
  molecule)
    scenarios=("$@")
    ((${#scenarios[@]})) || scenarios=("${ALL_SCENARIOS[@]}")
    run_jobs "${scenarios[@]}"
    ;;
esac

printf '\n==> summary (%ss in all; logs in %s)\n' "$(($(date +%s) - t_start))" "$LOGS"
printf '%s\n' "${summary[@]}"
printf 'steps: %d passed, %d failed\n' "$passed" "$failed"
((failed == 0))
