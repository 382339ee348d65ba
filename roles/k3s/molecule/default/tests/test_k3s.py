"""State of the converged hosts: binary, config, token, unit, registries, images.

k3s is never started in this scenario (the release binary cannot be obtained here; the
installed "binary" is a placeholder from the local release fixture). These tests check
everything up to running it, and that it is indeed not running.
"""

from __future__ import annotations

import yaml
from conftest import EPHEMERAL, cluster_inventory, docker_exec, release_sha256
from testinfra.host import Host

# The test hosts are containers: testinfra's docker backend is much faster than going
# through Ansible for every command.
testinfra_hosts = [f"docker://{name}" for name in cluster_inventory()]


def _name(host: Host) -> str:
    return host.backend.get_hostname()


def _config(host: Host) -> dict[str, object]:
    return yaml.safe_load(host.file("/etc/rancher/k3s/config.yaml").content_string)


def _role(host: Host, groups: dict[str, list[str]]) -> str:
    return "server" if _name(host) in groups["k3s_servers"] else "agent"


def test_binary_is_the_verified_release_artifact(host: Host) -> None:
    binary = host.file("/usr/local/bin/k3s")
    assert binary.is_file
    assert binary.mode == 0o755
    assert binary.user == "root"
    assert binary.sha256sum == release_sha256("k3s")
    for command in ("kubectl", "crictl", "ctr"):
        assert host.file(f"/usr/local/bin/{command}").linked_to == "/usr/local/bin/k3s"


def test_airgap_images_archive_is_in_place(host: Host) -> None:
    archive = host.file("/var/lib/rancher/k3s/agent/images/k3s-airgap-images-amd64.tar.zst")
    assert archive.is_file
    assert archive.sha256sum == release_sha256("k3s-airgap-images-amd64.tar.zst")


def test_config_of_first_server_initialises_the_cluster(host: Host, groups: dict[str, list[str]]) -> None:
    config = _config(host)
    assert host.file("/etc/rancher/k3s/config.yaml").mode == 0o600
    assert config["token-file"] == "/etc/rancher/k3s/cluster-token"
    assert "token" not in config
    first = groups["k3s_servers"][0]
    if _name(host) == first:
        assert config["cluster-init"] is True
        assert "server" not in config
    else:
        assert "cluster-init" not in config
        assert config["server"] == f"https://{first}:6443"


def test_server_and_agent_settings(host: Host, groups: dict[str, list[str]]) -> None:
    config = _config(host)
    if _role(host, groups) == "server":
        assert config["secrets-encryption"] is True
        assert config["write-kubeconfig-mode"] == "0600"
        assert config["tls-san"] == [groups["k3s_servers"][0], "k3s.example.internal"]
        assert config["node-label"] == ["mlops.io/tier=production"]  # k3s_server_config merged in
        assert "disable" not in config  # traefik kept: the stack's Ingress needs it
        assert host.file("/var/lib/rancher/k3s/server/manifests").is_directory
    else:
        assert set(config) == {"token-file", "server", "protect-kernel-defaults"}
        assert not host.file("/var/lib/rancher/k3s/server/manifests").exists


def test_token_is_secret_and_the_same_on_every_node(host: Host, cluster_hosts: list[str]) -> None:
    token = host.file("/etc/rancher/k3s/cluster-token")
    assert token.mode == 0o600
    assert token.user == "root"
    values = {name: docker_exec(name, "cat /etc/rancher/k3s/cluster-token").strip() for name in cluster_hosts}
    assert len(set(values.values())) == 1, "nodes disagree on the cluster token"
    assert len(values[_name(host)]) == 64


def test_unit_mirrors_upstream_and_is_enabled_but_not_running(host: Host, groups: dict[str, list[str]]) -> None:
    role = _role(host, groups)
    service = "k3s" if role == "server" else "k3s-agent"
    unit = host.file(f"/etc/systemd/system/{service}.service").content_string
    assert f"ExecStart=/usr/local/bin/k3s {role}\n" in unit
    assert ("Type=notify" if role == "server" else "Type=exec") in unit
    for line in (
        "KillMode=process",
        "Delegate=yes",
        "LimitNOFILE=1048576",
        "Restart=always",
        "ExecStartPre=-/sbin/modprobe br_netfilter",
    ):
        assert line in unit
    assert host.service(service).is_enabled
    # k3s_start: false -- the placeholder binary is never started.
    assert not host.service(service).is_running
    assert host.run("systemd-analyze verify /etc/systemd/system/%s.service", service).rc == 0


def test_registries_configuration(host: Host) -> None:
    registries = host.file("/etc/rancher/k3s/registries.yaml")
    assert registries.mode == 0o600
    mirrors = yaml.safe_load(registries.content_string)["mirrors"]
    assert mirrors == {"docker.io": {"endpoint": ["https://registry.example.internal:5000"]}}


def test_no_kubeconfig_is_made_up_without_a_running_k3s() -> None:
    # k3s writes the kubeconfig when it starts; the role fetches it only then.
    assert not (EPHEMERAL / "kubeconfig.yaml").exists()
