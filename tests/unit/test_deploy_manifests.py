"""deploy/k8s: every manifest valid against the Kubernetes schemas, and in step with the app.

The schemas come with `kubernetes-validate` (offline, strict: unknown fields are errors). The
rest checks what no schema can: that the env parses through the app's own Settings, that
probes and ports point at PORT, that the grace period outlasts an execution and the shutdown
grace, and that the Service, HPA, PDB and NetworkPolicy select the Deployment's pods."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from adapters.metrics import PrometheusMetrics
from adapters.settings import VARIABLES, Settings
from domain.limits import MIB

K8S = Path(__file__).resolve().parents[2] / "deploy" / "k8s"
VARIANTS = ("compat", "nsjail")
# The oldest version the manifests rely on (preStop `sleep`, `appArmorProfile` fields) and the
# newest the validator knows.
VERSIONS = ("1.30", kubernetes_validate.latest_version())
# YAML files that are not Kubernetes objects, each checked on its own below.
NOT_OBJECTS = {
    "base/kustomization.yaml",
    "compat/kustomization.yaml",
    "nsjail/kustomization.yaml",
    "extras/prometheus-adapter-values.yaml",
}
COMPAT_CAPABILITIES = {"SYS_ADMIN", "SETUID", "SETGID", "KILL", "SETPCAP"}
WARM_POOL_IDLE_MIB = 200  # docs/performance.md: ~180-190 MiB PSS with 2 slots and pandas
QUEUE_METRIC = "safe_exec_queue_depth"
# API_KEYS_FILE arrives with the API-key work of issue 7 (another branch); until Settings
# knows it, it is the one name allowed beyond VARIABLES. Once it is there, nothing is.
PENDING_VARIABLES = {"API_KEYS_FILE"} - set(VARIABLES)


def _yaml_files() -> list[str]:
    return sorted(str(p.relative_to(K8S)) for p in K8S.rglob("*.y*ml"))


def _documents(relative: str) -> list[dict[str, Any]]:
    with (K8S / relative).open() as handle:
        return [doc for doc in yaml.safe_load_all(handle) if doc is not None]


def _objects() -> Iterator[tuple[str, int, dict[str, Any]]]:
    for relative in _yaml_files():
        if relative in NOT_OBJECTS:
            continue
        for index, doc in enumerate(_documents(relative)):
            yield relative, index, doc


def _one(relative: str, kind: str) -> dict[str, Any]:
    found = [doc for doc in _documents(relative) if doc.get("kind") == kind]
    assert len(found) == 1, f"{relative}: expected one {kind}, found {len(found)}"
    return found[0]


def _deployment(variant: str) -> dict[str, Any]:
    return _one(f"{variant}/deployment.yaml", "Deployment")


def _container(variant: str) -> dict[str, Any]:
    containers = _deployment(variant)["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return dict(containers[0])


def _env(variant: str) -> dict[str, str]:
    entries = _container(variant)["env"]
    names = [entry["name"] for entry in entries]
    assert len(names) == len(set(names)), f"duplicate env names in {variant}: {names}"
    assert all("valueFrom" not in entry for entry in entries)
    return {entry["name"]: entry["value"] for entry in entries}


def _settings(variant: str, tmp_path: Path) -> Settings:
    """The app's own parse of the Deployment's env. API_KEYS_FILE names a file of the
    mounted Secret, which exists only in the pod: a stand-in with one key replaces it."""
    env = _env(variant)
    if "API_KEYS_FILE" in env:
        keys = tmp_path / "api-keys"
        keys.write_text("# a stand-in for the Secret's content\nstand-in-key-0123456789\n")
        env["API_KEYS_FILE"] = str(keys)
    return Settings.from_env(env, cpus=lambda: 1)


def _port_number(container: dict[str, Any], port: int | str) -> int:
    """A probe's or Service's port: a number, or the name of one of the container's ports."""
    if isinstance(port, int):
        return port
    named = [p["containerPort"] for p in container["ports"] if p.get("name") == port]
    assert len(named) == 1, f"no container port named {port!r}"
    return int(named[0])


def _pod_labels(variant: str) -> dict[str, str]:
    return dict(_deployment(variant)["spec"]["template"]["metadata"]["labels"])


def _selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return bool(selector) and all(labels.get(key) == value for key, value in selector.items())


def test_every_yaml_file_is_an_object_or_a_known_non_object() -> None:
    files = set(_yaml_files())
    assert files >= NOT_OBJECTS
    objects = {relative for relative, _index, _doc in _objects()}
    assert objects == files - NOT_OBJECTS
    assert {"compat/deployment.yaml", "nsjail/deployment.yaml", "base/hpa.yaml"} <= objects


@pytest.mark.parametrize("version", VERSIONS)
def test_every_object_is_valid_against_the_kubernetes_schema(version: str) -> None:
    checked = []
    for relative, index, doc in _objects():
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as error:
            pytest.fail(f"{relative} #{index} ({doc.get('kind')}): {error.message}")
        checked.append(doc["kind"])
    assert sorted(set(checked)) == [
        "Deployment",
        "HorizontalPodAutoscaler",
        "Namespace",
        "NetworkPolicy",
        "PodDisruptionBudget",
        "Service",
    ]


def test_the_validator_rejects_what_it_should() -> None:
    """The schema check can fail: a misspelt field and a wrong type are both refused."""
    deployment = _deployment("compat")
    misspelt = copy.deepcopy(deployment)
    misspelt["spec"]["template"]["spec"]["containers"][0]["readinessprobe"] = {}
    wrong_type = copy.deepcopy(deployment)
    wrong_type["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] = "30"
    for bad in (misspelt, wrong_type):
        with pytest.raises(kubernetes_validate.ValidationError):
            kubernetes_validate.validate(bad, VERSIONS[-1], strict=True)


def test_kustomizations_name_existing_files_and_every_object_but_the_extras() -> None:
    covered: set[str] = set()
    for directory in ("base", *VARIANTS):
        kustomization = _documents(f"{directory}/kustomization.yaml")[0]
        assert kustomization["kind"] == "Kustomization"
        for resource in kustomization["resources"]:
            target = (K8S / directory / resource).resolve()
            assert target.exists(), f"{directory}: {resource} does not exist"
            if target.is_file():
                covered.add(str(target.relative_to(K8S)))
        if directory in VARIANTS:
            assert "../base" in kustomization["resources"]
    objects = {relative for relative, _index, _doc in _objects()}
    assert covered == {o for o in objects if not o.startswith("extras/")}


@pytest.mark.parametrize("variant", VARIANTS)
def test_the_env_parses_through_the_apps_settings(variant: str, tmp_path: Path) -> None:
    env = _env(variant)
    assert set(env) - set(VARIABLES) <= PENDING_VARIABLES, set(env) - set(VARIABLES)
    settings = _settings(variant, tmp_path)
    expected_mode = {"compat": "compat", "nsjail": "nsjail-warm"}[variant]
    assert settings.sandbox_mode == expected_mode
    assert (settings.host, settings.port) == ("0.0.0.0", 8080)
    assert settings.max_concurrency == 2
    assert settings.queue_size == 8
    assert settings.limits.wall_time_s == 5
    assert settings.limits.memory_bytes == 512 * MIB
    assert settings.log_format == "json"


@pytest.mark.parametrize("variant", VARIANTS)
def test_ports_and_probes_point_at_port_and_health(variant: str, tmp_path: Path) -> None:
    settings = _settings(variant, tmp_path)
    container = _container(variant)
    assert [p["containerPort"] for p in container["ports"]] == [settings.port]
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        check = container[probe]["httpGet"]
        assert check["path"] == "/health", probe
        assert _port_number(container, check["port"]) == settings.port, probe
    annotations = _deployment(variant)["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/port"] == str(settings.port)
    assert annotations["prometheus.io/path"] == "/metrics"


@pytest.mark.parametrize("variant", VARIANTS)
def test_the_grace_period_outlasts_prestop_an_execution_and_the_shutdown_grace(
    variant: str, tmp_path: Path
) -> None:
    settings = _settings(variant, tmp_path)
    pod = _deployment(variant)["spec"]["template"]["spec"]
    pre_stop = _container(variant)["lifecycle"]["preStop"]["sleep"]["seconds"]
    assert 0 < pre_stop < 30
    grace = pod["terminationGracePeriodSeconds"]
    assert grace > settings.limits.wall_time_s + settings.shutdown_grace_s
    # The grace period runs from the preStop hook's start, not from SIGTERM.
    assert grace > pre_stop + settings.limits.wall_time_s + settings.shutdown_grace_s


@pytest.mark.parametrize("variant", VARIANTS)
def test_resources_cover_every_slot_and_the_warm_pool(variant: str, tmp_path: Path) -> None:
    settings = _settings(variant, tmp_path)
    resources = _container(variant)["resources"]
    assert resources["requests"] == resources["limits"]  # Guaranteed QoS
    memory = resources["limits"]["memory"]
    assert memory.endswith("Mi")
    per_slot = settings.limits.memory_bytes + 2 * settings.limits.tmp_size_bytes
    needed = settings.max_concurrency * per_slot + WARM_POOL_IDLE_MIB * MIB
    assert int(memory[:-2]) * MIB >= needed
    # One core per slot: each slot's zygotes are pinned to a CPU of their own.
    assert int(resources["limits"]["cpu"]) == settings.max_concurrency


@pytest.mark.parametrize("variant", VARIANTS)
def test_writable_paths_and_the_api_key_secret_are_mounted(variant: str, tmp_path: Path) -> None:
    container = _container(variant)
    pod = _deployment(variant)["spec"]["template"]["spec"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert set(mounts.values()) == set(volumes)
    assert "emptyDir" in volumes[mounts["/tmp"]]
    assert "emptyDir" in volumes[mounts["/run"]]  # the uid lease, /run/safe-exec
    keys_file = Path(_env(variant)["API_KEYS_FILE"])
    secret = volumes[mounts[str(keys_file.parent)]]["secret"]
    assert secret["secretName"] == "safe-exec-api-keys"
    assert secret["defaultMode"] == 0o400  # root only: no script uid can read the keys
    assert pod["automountServiceAccountToken"] is False
    assert pod["enableServiceLinks"] is False
    assert pod["securityContext"]["runAsUser"] == 0


def test_security_contexts_are_the_documented_minimum() -> None:
    compat = _container("compat")["securityContext"]
    assert compat["privileged"] is False
    assert compat["capabilities"]["drop"] == ["ALL"]
    assert set(compat["capabilities"]["add"]) == COMPAT_CAPABILITIES
    assert compat["seccompProfile"]["type"] == "Unconfined"
    assert compat["appArmorProfile"]["type"] == "Unconfined"
    nsjail = _container("nsjail")["securityContext"]
    assert nsjail["privileged"] is True
    for context in (compat, nsjail):
        # The API server refuses allowPrivilegeEscalation: false with privileged or with
        # CAP_SYS_ADMIN; the schema does not know that rule.
        if context.get("allowPrivilegeEscalation") is False:
            added = {c.removeprefix("CAP_") for c in context.get("capabilities", {}).get("add", [])}
            assert not context.get("privileged") and "SYS_ADMIN" not in added


def test_the_variants_differ_only_in_mode_and_security() -> None:
    def stripped(variant: str) -> dict[str, Any]:
        doc = copy.deepcopy(_deployment(variant))
        del doc["metadata"]["labels"]["safe-exec/sandbox"]
        del doc["spec"]["template"]["metadata"]["labels"]["safe-exec/sandbox"]
        container = doc["spec"]["template"]["spec"]["containers"][0]
        del container["securityContext"]
        container["env"] = [
            e for e in container["env"] if e["name"] not in ("SANDBOX", "FORCE_COMPAT")
        ]
        return doc

    assert stripped("compat") == stripped("nsjail")
    assert _env("compat")["FORCE_COMPAT"] == "1" and "SANDBOX" not in _env("compat")
    assert _env("nsjail")["SANDBOX"] == "nsjail-warm" and "FORCE_COMPAT" not in _env("nsjail")


@pytest.mark.parametrize("variant", VARIANTS)
def test_service_pdb_and_network_policy_select_the_pods(variant: str) -> None:
    labels = _pod_labels(variant)
    deployment = _deployment(variant)
    assert _selects(deployment["spec"]["selector"]["matchLabels"], labels)
    service = _one("base/service.yaml", "Service")
    assert _selects(service["spec"]["selector"], labels)
    [port] = service["spec"]["ports"]
    container = _container(variant)
    assert _port_number(container, port["targetPort"]) == container["ports"][0]["containerPort"]
    pdb = _one("base/pdb.yaml", "PodDisruptionBudget")
    assert _selects(pdb["spec"]["selector"]["matchLabels"], labels)
    policy = _one("base/networkpolicy.yaml", "NetworkPolicy")
    assert _selects(policy["spec"]["podSelector"]["matchLabels"], labels)
    [rule] = policy["spec"]["ingress"]
    assert [_port_number(container, p["port"]) for p in rule["ports"]] == [8080]
    assert policy["spec"]["egress"] == []
    namespaces = {doc["metadata"].get("namespace") for _r, _i, doc in _objects()} - {None}
    assert namespaces == {_one("base/namespace.yaml", "Namespace")["metadata"]["name"]}


@pytest.mark.parametrize("relative", ["base/hpa.yaml", "extras/hpa-queue-depth.yaml"])
def test_each_hpa_targets_the_deployment(relative: str) -> None:
    hpa = _one(relative, "HorizontalPodAutoscaler")
    target = hpa["spec"]["scaleTargetRef"]
    for variant in VARIANTS:
        deployment = _deployment(variant)
        assert (target["apiVersion"], target["kind"]) == (deployment["apiVersion"], "Deployment")
        assert target["name"] == deployment["metadata"]["name"]
    assert 2 <= hpa["spec"]["minReplicas"] < hpa["spec"]["maxReplicas"]
    cpu = [m for m in hpa["spec"]["metrics"] if m["type"] == "Resource"]
    assert cpu[0]["resource"]["name"] == "cpu"


class _Slots:
    capacity = 2
    in_use = 2
    waiting = 3


def test_the_queue_depth_hpa_reads_the_gauge_the_app_exports() -> None:
    hpa = _one("extras/hpa-queue-depth.yaml", "HorizontalPodAutoscaler")
    [pods] = [m["pods"] for m in hpa["spec"]["metrics"] if m["type"] == "Pods"]
    assert pods["metric"]["name"] == QUEUE_METRIC
    [rule] = _documents("extras/prometheus-adapter-values.yaml")[0]["rules"]["custom"]
    assert rule["seriesQuery"].startswith(QUEUE_METRIC + "{")
    assert rule["name"]["as"] == QUEUE_METRIC
    exported = text_string_to_metric_families(PrometheusMetrics(slots=_Slots()).render().decode())
    gauges = {f.name: f for f in exported if f.type == "gauge"}
    assert [s.value for s in gauges[QUEUE_METRIC].samples] == [3]
