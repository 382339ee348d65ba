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

# The project-level scenarios (molecule/: the whole edge site, the fleet) and the role
# scenarios, the longest first (durations of a fresh-clone run, README.md) so that two
# lanes end close together.
ALL_SCENARIOS=(edge_stack fleet edge hardening k3s pull docker model_release k8s_topology prometheus alertmanager grafana)
# Scenarios run this many at a time: much of their time is apt downloads and waits, so two
# at once finish sooner on two cores. Each has its own container names (MLOPS_MOLECULE_PREFIX).
JOBS=${MLOPS_TEST_JOBS:-2}

LINT_TITLE="lint: yamllint, ansible-lint (production), ruff"
PYTEST_TITLE="pytest: templates, services, policies, parity"

passed=0 failed=0
failures=()
summary=()

# record PASS|FAIL SECONDS TITLE: a step's line of the summary, and the counts.
record() {
  summary+=("$1  $(printf '%5ss' "$2")  $3")
  if [ "$1" = PASS ]; then passed=$((passed + 1)); else failed=$((failed + 1)); failures+=("$3"); fi
}

# run_step TITLE COMMAND...: runs COMMAND in the foreground and records it; its status is COMMAND's.
run_step() {
  local name=$1 t0 rc; shift
  t0=$(date +%s)
  printf '\n==> %s\n' "$name"
  "$@"; rc=$?
  if ((rc == 0)); then record PASS $(($(date +%s) - t0)) "$name"; else record FAIL $(($(date +%s) - t0)) "$name"; fi
  return $rc
}

# timed_job DIR NAME COMMAND...: runs COMMAND (meant for the background) with its output in
# DIR/NAME.out, and writes its outcome and duration to DIR/NAME.status.
timed_job() {
  local dir=$1 name=$2 t0 r; shift 2
  t0=$(date +%s)
  if "$@" >"$dir/$name.out" 2>&1; then r=PASS; else r=FAIL; fi
  echo "$r $(($(date +%s) - t0))" >"$dir/$name.status"
}

# report_job DIR NAME TITLE: prints a finished timed_job's outcome and output, and records it.
report_job() {
  local r secs
  read -r r secs <"$1/$2.status"
  printf '\n==> %s (%s, %ss)\n' "$3" "$r" "$secs"
  cat "$1/$2.out"
  record "$r" "$secs" "$3"
}

setup() {
  bash scripts/engine.sh all && bash scripts/build-images.sh
}

# A whole run builds the images and lints side by side: the linters need the toolchain
# alone, and the image builds are mostly waits on apt and the Docker Engine. The lint step
# is reported after the images, with its own outcome, duration and output.
# Its status is the setup's: a failed lint is recorded, and the tests still run.
setup_and_lint() {
  run_step "setup: toolchain, Docker Engine" bash scripts/engine.sh all || return
  # shellcheck disable=SC1091
  source "$ROOT/.venv/bin/activate"
  local dir rc; dir=$(mktemp -d)
  timed_job "$dir" lint lint &
  run_step "setup: images" bash scripts/build-images.sh; rc=$?
  wait
  report_job "$dir" lint "$LINT_TITLE"
  rm -rf "$dir"
  return $rc
}

lint() {
  local rc=0
  yamllint --strict . || rc=1
  ansible-lint --profile production --offline || rc=1
  ruff check . || rc=1
  ruff format --check . || rc=1
  return $rc
}

# Test files go to PYTEST_WORKERS processes (pytest-xdist), a whole file to one worker: files
# share module-scoped fixtures. Most tests wait on ansible-playbook or a container, so one
# worker more than the two cores keeps them busy: on a quiet two-core machine the suites took
# 615 s with 2 workers, 512 s with 3 and 485 s with 4.
PYTEST_WORKERS=${MLOPS_PYTEST_WORKERS:-3}

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

# Runs the scenarios JOBS at a time; each one's outcome and duration land in a status file,
# read back in the order given so the summary does not depend on which finished first.
molecule_all() {
  local status_dir; status_dir=$(mktemp -d)
  for s in "$@"; do
    while (($(jobs -rp | wc -l) >= JOBS)); do wait -n || true; done
    timed_job "$status_dir" "$s" molecule_scenario "$s" &
  done
  wait
  for s in "$@"; do report_job "$status_dir" "$s" "molecule: $s"; done
  rm -rf "$status_dir"
}

what=${1:-all}
[ $# -gt 0 ] && shift

case "$what" in
  all|setup|lint|pytest|molecule) ;;
  *) echo "usage: $0 [all|setup|lint|pytest|molecule [scenario ...]]" >&2; exit 2 ;;
esac

t_start=$(date +%s)
setup_failed() { echo "setup failed; nothing else can run" >&2; exit 1; }
if [ "$what" = all ]; then
  setup_and_lint || setup_failed
elif [ "$what" = setup ]; then
  run_step "setup: toolchain, Docker Engine, images" setup || setup_failed
fi
# shellcheck disable=SC1091
source "$ROOT/.venv/bin/activate"
case "$what" in
  lint) run_step "$LINT_TITLE" lint ;;&
  all|pytest) run_step "$PYTEST_TITLE" pytest_suites ;;&
  all|molecule)
    scenarios=("$@")
    ((${#scenarios[@]})) || scenarios=("${ALL_SCENARIOS[@]}")
    molecule_all "${scenarios[@]}"
    ;;
esac

printf '\n==> summary (%ss in all; logs in %s)\n' "$(($(date +%s) - t_start))" "$LOGS"
printf '%s\n' "${summary[@]}"
printf 'steps: %d passed, %d failed\n' "$passed" "$failed"
((failed == 0))
