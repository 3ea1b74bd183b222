"""The deployment files agree with the code they run.

deploy/compose.yaml, deploy/Dockerfile and the Prometheus and Grafana files are read as
data and checked against the CLI (``services.cli.app``), the settings
(``services.settings.Settings``, built from each container's environment exactly as the
service builds it), pyproject.toml and each other. No engine is needed: nothing here
builds or starts a container.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shlex
import tomllib
from functools import cache
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

import pytest
import typer
import yaml

from services.cli import app
from services.contracts.registry import SCHEMAS_DIR
from services.scaleout.kafka.topics import TOPICS_FILE
from services.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
PREFIX = "TOUCHSTREAM_"
INTERPOLATION = re.compile(r"\$\{[A-Za-z_][A-Za-z0-9_]*(:?[?-][^}]*)?\}")
SECRET_NAME = re.compile(r"KEY|PASSWORD|SECRET|TOKEN")


@cache
def compose() -> dict[str, Any]:
    return yaml.safe_load((DEPLOY / "compose.yaml").read_text(encoding="utf-8"))


@cache
def prometheus_jobs() -> dict[str, dict[str, Any]]:
    config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text(encoding="utf-8"))
    return {job["job_name"]: job for job in config["scrape_configs"]}


@cache
def dockerfile() -> tuple[tuple[str, str], ...]:
    """(INSTRUCTION, arguments) per instruction, continuation lines joined."""
    text = (DEPLOY / "Dockerfile").read_text(encoding="utf-8")
    code = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    logical = code.replace("\\\n", " ")
    parsed = []
    for line in logical.splitlines():
        if line.strip():
            instruction, _, arguments = line.strip().partition(" ")
            parsed.append((instruction.upper(), arguments.strip()))
    return tuple(parsed)


def instructions(name: str) -> list[str]:
    return [arguments for instruction, arguments in dockerfile() if instruction == name]


def exec_form(name: str) -> list[str]:
    (arguments,) = instructions(name)
    return json.loads(arguments)  # exec form: a JSON array, no shell in between


def image_environment() -> dict[str, str]:
    environment: dict[str, str] = {}
    for word in (word for arguments in instructions("ENV") for word in shlex.split(arguments)):
        key, _, value = word.partition("=")
        environment[key] = value
    return environment


def touchstream_services() -> dict[str, dict[str, Any]]:
    """The compose services built from deploy/Dockerfile."""
    services = {}
    for name, service in compose()["services"].items():
        build = service.get("build")
        if build and (DEPLOY / build["context"] / build["dockerfile"]).resolve() == DEPLOY / "Dockerfile":
            services[name] = service
    assert {"api", "worker"} <= services.keys(), "the API and the worker are built from deploy/Dockerfile"
    return services


def compose_environment(service: dict[str, Any]) -> dict[str, str | None]:
    environment = service.get("environment") or {}
    if isinstance(environment, list):
        environment = dict(item.split("=", 1) if "=" in item else (item, None) for item in environment)
    return {key: None if value is None else str(value) for key, value in environment.items()}


def container_environment(name: str) -> dict[str, str | None]:
    """What the service's process sees: the image's ENV overlaid by the compose file."""
    return {**image_environment(), **compose_environment(compose()["services"][name])}


def settings_of(name: str, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Settings built the way the container builds them; interpolated secrets left out."""
    for key in [key for key in os.environ if key.upper().startswith(PREFIX)]:
        monkeypatch.delenv(key)
    for key, value in container_environment(name).items():
        if key.startswith(PREFIX) and value is not None and not INTERPOLATION.search(value):
            monkeypatch.setenv(key, value)
    return Settings()


def command_of(service: dict[str, Any]) -> list[str]:
    command = service.get("command", exec_form("CMD"))
    return shlex.split(command) if isinstance(command, str) else [str(word) for word in command]


def container_ports(service: dict[str, Any]) -> set[int]:
    published = {int(str(port).rsplit(":", 1)[-1].split("/")[0]) for port in service.get("ports", [])}
    return published | {int(str(port).split("/")[0]) for port in service.get("expose", [])}


def service_with_image(prefix: str) -> str:
    (name,) = [name for name, s in compose()["services"].items() if s.get("image", "").startswith(prefix)]
    return name


CLI_COMMANDS = set(typer.main.get_command(app).commands)  # type: ignore[attr-defined]


def test_every_touchstream_service_runs_a_command_of_the_cli() -> None:
    for name, service in touchstream_services().items():
        assert command_of(service)[0] in CLI_COMMANDS, f"{name}: {command_of(service)} is not a touchstream command"
    assert command_of(compose()["services"]["api"]) == ["run"]
    assert command_of(compose()["services"]["worker"]) == ["worker"]


def test_the_image_runs_the_touchstream_command_and_serves_the_api_by_default() -> None:
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["scripts"]
    assert exec_form("ENTRYPOINT") == ["touchstream"] and "touchstream" in scripts
    assert exec_form("CMD") == ["run"] and "run" in CLI_COMMANDS


@pytest.mark.parametrize("name", ["api", "worker"])
def test_every_touchstream_variable_names_a_setting_and_parses(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    variables = {key: value for key, value in container_environment(name).items() if key.startswith(PREFIX)}
    assert variables, f"{name} sets no {PREFIX} variable"
    for key in variables:
        assert key[len(PREFIX):].lower() in Settings.model_fields, f"{name}: {key} is no setting (silently ignored)"
    settings_of(name, monkeypatch)  # raises a ValidationError naming a malformed value


@pytest.mark.parametrize("name", ["api", "worker"])
def test_api_and_workers_run_the_scale_out_runtime(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    assert settings_of(name, monkeypatch).runtime == "kafka"


def test_the_api_listens_on_every_interface_on_the_port_it_publishes_and_prometheus_scrapes(
        monkeypatch: pytest.MonkeyPatch) -> None:
    settings = settings_of("api", monkeypatch)
    assert settings.host == "0.0.0.0", "inside a container, 127.0.0.1 is unreachable from other containers"
    assert settings.port in container_ports(compose()["services"]["api"])
    job = prometheus_jobs()["touchstream-api"]
    assert job.get("metrics_path", "/metrics") == "/metrics"
    assert [target for c in job["static_configs"] for target in c["targets"]] == [f"api:{settings.port}"]


def test_every_worker_replica_serves_metrics_on_the_port_prometheus_scrapes(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = settings_of("worker", monkeypatch)
    worker = compose()["services"]["worker"]
    assert settings.worker_host == "0.0.0.0"
    assert settings.worker_web_port in container_ports(worker)
    assert worker["deploy"]["replicas"] >= 2
    job = prometheus_jobs()["touchstream-worker"]
    assert job.get("metrics_path", "/metrics") == "/metrics"
    # one A record per replica: a static target would scrape whichever replica answers
    assert "static_configs" not in job
    assert [(c["names"], c["type"], c["port"]) for c in job["dns_sd_configs"]] == [
        (["worker"], "A", settings.worker_web_port)]


def listeners(value: str) -> dict[str, tuple[str, int]]:
    parsed = {}
    for listener in value.split(","):
        name, _, address = listener.strip().partition("://")
        host, _, port = address.rpartition(":")
        parsed[name] = (host, int(port))
    return parsed


@pytest.mark.parametrize("name", ["api", "worker"])
def test_kafka_bootstrap_is_the_brokers_internal_listener(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    kafka_name = service_with_image("apache/kafka:")
    kafka = compose_environment(compose()["services"][kafka_name])
    bound = listeners(kafka["KAFKA_LISTENERS"] or "")
    advertised = listeners(kafka["KAFKA_ADVERTISED_LISTENERS"] or "")
    controllers = set((kafka["KAFKA_CONTROLLER_LISTENER_NAMES"] or "").split(","))
    for address in settings_of(name, monkeypatch).kafka_bootstrap.split(","):
        host, _, port = address.rpartition(":")
        (listener,) = [n for n, a in advertised.items() if a == (host, int(port))] or [None]
        assert listener is not None, f"{address} is not an advertised listener of {kafka_name}"
        assert host == kafka_name and listener not in controllers
        assert bound[listener][1] == int(port), f"{listener} is advertised on {port} but bound elsewhere"


@pytest.mark.parametrize("name", ["api", "worker"])
def test_the_views_live_in_the_redis_service_which_keeps_them_across_restarts(
        name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    redis_name = service_with_image("redis:")
    redis_command = compose()["services"][redis_name]["command"]
    url = urlsplit(settings_of(name, monkeypatch).redis_url)
    assert (url.scheme, url.hostname, url.port or 6379) == ("redis", redis_name, 6379)
    assert "--port" not in redis_command and "--appendonly yes" in " ".join(redis_command)


def test_every_touchstream_service_waits_for_a_healthy_broker_and_redis() -> None:
    needed = {service_with_image("apache/kafka:"), service_with_image("redis:")}
    for name, service in touchstream_services().items():
        for dependency in needed:
            assert service["depends_on"][dependency]["condition"] == "service_healthy", name
            assert "test" in compose()["services"][dependency]["healthcheck"], dependency


def test_every_image_is_pinned_to_a_tag_and_ours_to_the_project_version() -> None:
    version = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["version"]
    images = [service["image"] for service in compose()["services"].values()] + instructions("FROM")
    for image in images:
        name, _, tag = image.split("@")[0].rpartition(":")
        assert name and "/" not in tag and tag not in ("", "latest") and "$" not in image, f"{image} is not pinned"
    assert {s["image"] for s in touchstream_services().values()} == {f"touchstream:{version}"}


def copies() -> list[tuple[tuple[str, ...], PurePosixPath]]:
    """(sources, absolute destination) per COPY; a relative destination is under WORKDIR."""
    workdir = PurePosixPath(instructions("WORKDIR")[-1])
    parsed = [[w for w in shlex.split(arguments) if not w.startswith("--")] for arguments in instructions("COPY")]
    return [(tuple(source.rstrip("/") for source in words[:-1]), workdir / words[-1]) for words in parsed]


def test_the_image_holds_every_directory_the_code_reads_beside_the_code_it_imports() -> None:
    workdir = PurePosixPath(instructions("WORKDIR")[-1])
    packages = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]
    needed = {pattern.rstrip("*") for pattern in packages["packages"]["find"]["include"]}
    needed |= {SCHEMAS_DIR.relative_to(ROOT).parts[0], TOPICS_FILE.relative_to(ROOT).parts[0]}
    for directory in needed:  # one COPY per directory: several sources would be flattened
        assert ((directory,), workdir / directory) in copies(), f"the image lacks {directory}/ in {workdir}"
    copied = {source for sources, _ in copies() for source in sources}
    assert {"pyproject.toml", "constraints.txt"} <= copied
    (install,) = [arguments for arguments in instructions("RUN") if "pip install" in arguments]
    assert re.search(r"pip install (.* )?-c constraints\.txt (.* )?\.(\s|$)", install), install
    # the wheel holds no schemas/: the source tree beside them must be what is imported
    assert image_environment()["PYTHONPATH"] == str(workdir)


def test_the_image_runs_unprivileged_and_exposes_the_ports_of_its_roles() -> None:
    assert instructions("USER")[-1] not in ("root", "0")
    exposed = {int(port) for arguments in instructions("EXPOSE") for port in arguments.split()}
    defaults = Settings.model_fields
    assert {defaults["port"].default, defaults["worker_web_port"].default} <= exposed


def test_no_secret_is_written_in_the_deployment_files() -> None:
    for name, service in compose()["services"].items():
        for key, value in compose_environment(service).items():
            if SECRET_NAME.search(key) and value is not None:
                assert INTERPOLATION.fullmatch(value), f"{name}: {key} holds a literal value"
    assert INTERPOLATION.fullmatch(compose_environment(compose()["services"]["api"])["TOUCHSTREAM_API_KEYS"] or "")
    assert not [key for key in image_environment() if SECRET_NAME.search(key)]


def test_the_monitoring_files_are_mounted_and_grafana_reads_the_prometheus_service() -> None:
    prometheus = service_with_image("prom/prometheus:")
    for name in (prometheus, service_with_image("grafana/grafana:")):
        for volume in compose()["services"][name]["volumes"]:
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (DEPLOY / source).exists(), f"{name} mounts {source}, which does not exist"
    volumes = compose()["services"][prometheus]["volumes"]
    assert "./prometheus/prometheus.yml:/etc/prometheus/prometheus.yml:ro" in volumes
    provisioning = yaml.safe_load(
        (DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yaml").read_text(encoding="utf-8"))
    (source,) = provisioning["datasources"]
    url = urlsplit(source["url"])
    assert (source["type"], url.hostname, url.port) == ("prometheus", prometheus, 9090)


def test_the_health_probe_asks_the_port_of_the_role_the_container_runs() -> None:
    spec = importlib.util.spec_from_file_location("deploy_healthcheck", DEPLOY / "healthcheck.py")
    assert spec is not None and spec.loader is not None
    probe = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(probe)
    settings = Settings(port=8081, worker_web_port=6067)
    command = ["python", "/usr/local/bin/touchstream"]
    assert probe.probe_url([*command, "worker"], settings) == "http://127.0.0.1:6067/healthz"
    assert probe.probe_url([*command, "run"], settings) == "http://127.0.0.1:8081/healthz"
    assert (("deploy/healthcheck.py",), PurePosixPath("/app/deploy/healthcheck.py")) in copies()
    assert "/app/deploy/healthcheck.py" in instructions("HEALTHCHECK")[0]


def test_the_api_container_is_given_time_to_drain_before_it_is_killed(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = settings_of("api", monkeypatch)
    grace = compose()["services"]["api"]["stop_grace_period"]
    assert re.fullmatch(r"\d+s", grace), grace
    assert int(grace[:-1]) > settings.shutdown_delay_seconds + settings.shutdown_grace_seconds


def test_prometheus_is_given_the_alert_rules_its_configuration_loads() -> None:
    config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text(encoding="utf-8"))
    volumes = compose()["services"][service_with_image("prom/prometheus:")]["volumes"]
    for rule_file in config["rule_files"]:
        assert f"./prometheus/{rule_file}:/etc/prometheus/{rule_file}:ro" in volumes, rule_file
