"""The Kubernetes manifests (deploy/kubernetes, kustomize) agree with the code they run.

The files are parsed as data and checked against the settings (every TOUCHSTREAM_*
variable is a field of ``services.settings.Settings`` and parses), the CLI commands,
the ports and probe paths the API and the worker really serve, and each other
(Services, HorizontalPodAutoscaler, disruption budgets, grace periods). No cluster is
needed; when ``kubectl`` is installed, its built-in kustomize renders the whole set too.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tomllib
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import typer
import yaml

from services.api.ops_routes import ops_router
from services.cli import app as cli
from services.scaleout.worker.app import create_worker_app
from services.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
KUBERNETES = ROOT / "deploy" / "kubernetes"
PREFIX = "TOUCHSTREAM_"
SECRET_NAME = re.compile(r"KEY|PASSWORD|SECRET|TOKEN|FORMS")
CLI_COMMANDS = set(typer.main.get_command(cli).commands)  # type: ignore[attr-defined]
ROLES = {"api": "run", "worker": "worker"}


@cache
def kustomization() -> dict[str, Any]:
    text = (KUBERNETES / "kustomization.yaml").read_text(encoding="utf-8")
    return yaml.safe_load(text)  # type: ignore[no-any-return]


@cache
def resources() -> tuple[dict[str, Any], ...]:
    documents = []
    for name in kustomization()["resources"]:
        documents += [d for d in yaml.safe_load_all((KUBERNETES / name).read_text(encoding="utf-8")) if d]
    return tuple(documents)


def resource(kind: str, name: str) -> dict[str, Any]:
    (found,) = [r for r in resources() if r["kind"] == kind and r["metadata"]["name"] == name]
    return found


def deployment(role: str) -> dict[str, Any]:
    return resource("Deployment", f"touchstream-{role}")


def container(role: str) -> dict[str, Any]:
    (only,) = deployment(role)["spec"]["template"]["spec"]["containers"]
    return only  # type: ignore[no-any-return]


def config_literals(name: str) -> dict[str, str]:
    (generator,) = [g for g in kustomization()["configMapGenerator"] if g["name"] == name]
    return dict(literal.split("=", 1) for literal in generator["literals"])


def environment(role: str) -> tuple[dict[str, str], dict[str, dict[str, Any]]]:
    """(plain values from the ConfigMaps and ``env``, secret references by variable)."""
    plain: dict[str, str] = {}
    for source in container(role).get("envFrom", []):
        plain.update(config_literals(source["configMapRef"]["name"]))
    secrets = {}
    for variable in container(role).get("env", []):
        if "value" in variable:
            plain[variable["name"]] = str(variable["value"])
        else:
            secrets[variable["name"]] = variable["valueFrom"]["secretKeyRef"]
    return plain, secrets


def settings_of(role: str, monkeypatch: pytest.MonkeyPatch) -> Settings:
    for key in [key for key in os.environ if key.upper().startswith(PREFIX)]:
        monkeypatch.delenv(key)
    for key, value in environment(role)[0].items():
        monkeypatch.setenv(key, value)
    return Settings()


def named_port(role: str, name: str) -> int:
    (port,) = [p["containerPort"] for p in container(role)["ports"] if p["name"] == name]
    return int(port)


def served_paths(role: str) -> set[str]:
    if role == "api":
        return {route.path for route in ops_router(None).routes}  # type: ignore[arg-type, attr-defined]
    worker, _ = create_worker_app(Settings())
    return set(worker.web.views)


def test_every_manifest_in_the_directory_is_part_of_the_kustomization() -> None:
    listed = set(kustomization()["resources"])
    on_disk = {p.name for p in KUBERNETES.glob("*.yaml")} - {"kustomization.yaml"}
    assert listed == on_disk
    kinds = {r["kind"] for r in resources()}
    assert {"Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget"} <= kinds


@pytest.mark.parametrize("role", ROLES)
def test_every_touchstream_variable_names_a_setting_and_parses(role: str, monkeypatch: pytest.MonkeyPatch) -> None:
    plain, secrets = environment(role)
    assert plain, f"{role} has no configuration"
    for key in [*plain, *secrets]:
        assert key.startswith(PREFIX), f"{role}: {key}"
        assert key[len(PREFIX):].lower() in Settings.model_fields, f"{role}: {key} is no setting (silently ignored)"
    assert settings_of(role, monkeypatch).runtime == "kafka"


@pytest.mark.parametrize("role", ROLES)
def test_each_role_runs_its_cli_command_with_the_image_entrypoint(role: str) -> None:
    version = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["version"]
    assert "command" not in container(role), "the image's ENTRYPOINT is `touchstream`"
    assert container(role)["args"] == [ROLES[role]] and ROLES[role] in CLI_COMMANDS
    assert container(role)["image"] == f"touchstream:{version}"
    (pin,) = [i for i in kustomization()["images"] if i["name"] == "touchstream"]
    assert pin["newTag"] == version


def test_secrets_are_referenced_by_name_and_never_written() -> None:
    assert "Secret" not in {r["kind"] for r in resources()}
    assert "secretGenerator" not in kustomization()
    for role in ROLES:
        plain, secrets = environment(role)
        assert not [key for key in plain if SECRET_NAME.search(key)], f"{role}: a secret in plain configuration"
        for key, reference in secrets.items():
            assert reference["name"] == "touchstream-secrets", key
    api_secrets = environment("api")[1]
    assert "optional" not in api_secrets["TOUCHSTREAM_API_KEYS"], "the API refuses to start without keys"
    assert api_secrets["TOUCHSTREAM_FORMS"]["optional"] is True


@pytest.mark.parametrize(("role", "port_name", "setting"),
                         [("api", "http", "port"), ("worker", "web", "worker_web_port")])
def test_each_role_listens_on_every_interface_on_the_port_its_pod_declares(
        role: str, port_name: str, setting: str, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = settings_of(role, monkeypatch)
    assert getattr(settings, setting) == named_port(role, port_name)
    assert (settings.host if role == "api" else settings.worker_host) == "0.0.0.0"
    annotations = deployment(role)["spec"]["template"]["metadata"]["annotations"]
    assert int(annotations["prometheus.io/port"]) == named_port(role, port_name)
    assert annotations["prometheus.io/path"] in served_paths(role)


@pytest.mark.parametrize("role", ROLES)
def test_probes_ask_paths_the_process_serves_on_its_own_port(role: str) -> None:
    probes = {kind: container(role)[kind]["httpGet"] for kind in ("startupProbe", "readinessProbe", "livenessProbe")}
    assert probes["readinessProbe"]["path"] == "/readyz"
    assert probes["livenessProbe"]["path"] == "/healthz"  # alive while draining or stalled: no restart loop
    ports = {p["name"] for p in container(role)["ports"]}
    for kind, probe in probes.items():
        assert probe["port"] in ports, f"{role} {kind}"
        assert probe["path"] in served_paths(role), f"{role} {kind}: {probe['path']} is not served"


@pytest.mark.parametrize("role", ROLES)
def test_services_and_budgets_select_the_pods_of_their_role(role: str) -> None:
    pod_labels = deployment(role)["spec"]["template"]["metadata"]["labels"]
    assert deployment(role)["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    service = resource("Service", f"touchstream-{role}")
    assert service["spec"]["selector"].items() <= pod_labels.items()
    ports = {p["name"] for p in container(role)["ports"]}
    assert all(p["targetPort"] in ports for p in service["spec"]["ports"])
    budget = resource("PodDisruptionBudget", f"touchstream-{role}")
    assert budget["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()


def test_the_api_autoscales_on_cpu_it_requests_and_the_deployment_leaves_replicas_to_it() -> None:
    hpa = resource("HorizontalPodAutoscaler", "touchstream-api")
    target = hpa["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", deployment("api")["metadata"]["name"])
    assert 2 <= hpa["spec"]["minReplicas"] < hpa["spec"]["maxReplicas"]
    assert [m["resource"]["name"] for m in hpa["spec"]["metrics"]] == ["cpu"]
    assert container("api")["resources"]["requests"]["cpu"], "CPU utilisation needs a CPU request"
    assert "replicas" not in deployment("api")["spec"], "a fixed count would fight the autoscaler on every apply"


def test_workers_are_at_least_two_and_no_more_than_the_partitions(monkeypatch: pytest.MonkeyPatch) -> None:
    replicas = deployment("worker")["spec"]["replicas"]
    assert 2 <= replicas <= settings_of("worker", monkeypatch).kafka_partitions
    assert not [r for r in resources() if r["kind"] == "HorizontalPodAutoscaler"
                and r["spec"]["scaleTargetRef"]["name"] == deployment("worker")["metadata"]["name"]]


def test_the_api_pod_is_given_time_to_drain_before_it_is_killed(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = settings_of("api", monkeypatch)
    grace = deployment("api")["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert settings.shutdown_delay_seconds > 0, "endpoints need a moment to drop a terminating pod"
    assert grace > settings.shutdown_delay_seconds + settings.shutdown_grace_seconds
    strategy = deployment("api")["spec"]["strategy"]["rollingUpdate"]
    assert strategy["maxUnavailable"] == 0


@pytest.mark.parametrize("role", ROLES)
def test_every_container_runs_unprivileged_with_memory_bounds_and_a_writable_data_dir(
        role: str, monkeypatch: pytest.MonkeyPatch) -> None:
    pod = deployment(role)["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] != 0
    assert container(role)["securityContext"]["readOnlyRootFilesystem"] is True
    resources_ = container(role)["resources"]
    assert resources_["requests"]["memory"] and resources_["limits"]["memory"]
    mounts = {m["mountPath"] for m in container(role)["volumeMounts"]}
    assert str(settings_of(role, monkeypatch).data_dir) in mounts


def test_kubectl_kustomize_renders_the_set_with_the_generated_config_map_wired_in() -> None:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        if os.environ.get("CI"):  # the CI machines have it: the real tool's check must not vanish there
            pytest.fail("kubectl is not installed on this CI machine")
        pytest.skip("kubectl is not installed: the checks above parse the files in Python")
    rendered = subprocess.run([kubectl, "kustomize", str(KUBERNETES)], capture_output=True, text=True, timeout=60)
    assert rendered.returncode == 0, rendered.stderr
    built = [d for d in yaml.safe_load_all(rendered.stdout) if d]
    (config_map,) = [d for d in built if d["kind"] == "ConfigMap"]
    assert re.fullmatch(r"touchstream-config-[a-z0-9]{10}", config_map["metadata"]["name"])
    assert config_map["data"] == config_literals("touchstream-config")
    for document in built:
        assert document["metadata"]["namespace"] == kustomization()["namespace"]
        if document["kind"] == "Deployment":
            (only,) = document["spec"]["template"]["spec"]["containers"]
            assert only["envFrom"] == [{"configMapRef": {"name": config_map["metadata"]["name"]}}]
