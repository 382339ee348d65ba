"""The pull scenario's source: a small git repository with signed commits, shipped as a bundle.

prepare.yml runs `python3 source_repo.py init DIR` on the controller; the verifier imports it to
commit a failing or an unsigned playbook and ship a new bundle. Everything lives under DIR
(Molecule's ephemeral directory): the repository, the signing key's GNUPGHOME, the bundles and
the public key (signer.asc) the converge hands to pull_verify_commit_keys.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

# Light on purpose: the test hosts share two cores. One file under /etc, one task that changes nothing.
GOOD = """---
- name: Converge the pull test host
  hosts: edge
  gather_facts: false
  become: true
  tasks:
    - name: Manage a file under /etc
      ansible.builtin.copy:
        content: "managed by the pull scenario\\n"
        dest: /etc/mlops-pull-test.conf
        mode: "0644"

    - name: Run a command that changes nothing
      ansible.builtin.command: "true"
      changed_when: false
"""
FAILING = (
    GOOD
    + """
    - name: Fail on purpose
      ansible.builtin.fail:
        msg: this commit is broken on purpose
"""
)
MANAGED_FILE = "/etc/mlops-pull-test.conf"
MANAGED_CONTENT = "managed by the pull scenario\n"


def git(directory: Path, *args: str) -> str:
    env = {**os.environ, "GNUPGHOME": str(directory.parent / "gnupg"), "GIT_CONFIG_GLOBAL": "/dev/null"}
    return subprocess.run(
        ["git", "-C", str(directory), *args], env=env, check=True, capture_output=True, text=True
    ).stdout.strip()


def commit(base: Path, playbook: str, message: str, sign: bool = True) -> str:
    repo = base / "repo"
    (repo / "site.yml").write_text(playbook)
    git(repo, "add", "site.yml")
    git(repo, "commit", "--quiet", "--allow-empty", "-S" if sign else "--no-gpg-sign", "-m", message)
    return git(repo, "rev-parse", "HEAD")


def bundle(base: Path, name: str) -> Path:
    out = base / name
    git(base / "repo", "bundle", "create", "--quiet", str(out), "main")
    return out


def init(base: Path) -> None:
    base.mkdir(parents=True, exist_ok=True)
    gnupg = base / "gnupg"
    gnupg.mkdir(mode=0o700, exist_ok=True)
    env = {**os.environ, "GNUPGHOME": str(gnupg)}
    subprocess.run(
        ["gpg", "--batch", "--quiet", "--passphrase", "", "--quick-gen-key", "pull scenario <pull@test.invalid>",
         "ed25519", "sign", "never"],
        env=env, check=True, capture_output=True,
    )  # fmt: skip
    key = subprocess.run(
        ["gpg", "--batch", "--armor", "--export", "pull@test.invalid"], env=env, check=True, capture_output=True
    ).stdout
    (base / "signer.asc").write_bytes(key)
    repo = base / "repo"
    repo.mkdir(exist_ok=True)
    git(repo, "init", "--quiet", "--initial-branch=main")
    for key_, value in (("user.name", "pull scenario"), ("user.email", "pull@test.invalid"),
                        ("user.signingkey", "pull@test.invalid"), ("commit.gpgsign", "false")):  # fmt: skip
        git(repo, "config", key_, value)
    commit(base, GOOD, "A light playbook for the pull scenario")
    bundle(base, "source.bundle")


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] != "init":
        sys.exit("usage: source_repo.py init DIR")
    init(Path(sys.argv[2]))
