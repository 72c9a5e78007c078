"""deploy/ checked offline: the Kubernetes manifests against the API schemas (kubernetes-validate) and
checkov's policies, the KEDA ScaledObject by hand, and the compose file's shape.

No cluster and no Docker engine run here, so this is static: every manifest the kustomizations list is
loaded with PyYAML and validated, and what the deployment must contain is asserted directly.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
K8S_VERSION = "1.33.0"
MEETVAR_UID = 10001
MEETVAR_SERVICES = ("dashboard", "archiver", "referee", "pose-worker", "camera-platform-1-side-left")


def _kustomization_files(folder: Path, seen: set[Path] | None = None) -> list[Path]:
    """Every manifest file a kustomization lists, following ``resources`` into other kustomizations."""
    seen = seen if seen is not None else set()
    kustomization = yaml.safe_load((folder / "kustomization.yaml").read_text())
    files: list[Path] = []
    entries = list(kustomization.get("resources", []))
    entries += [p["path"] for p in kustomization.get("patches", []) if "path" in p]
    for entry in entries:
        path = (folder / entry).resolve()
        assert path.exists(), f"{folder}/kustomization.yaml lists {entry}, which does not exist"
        if path.is_dir():
            if path not in seen:
                seen.add(path)
                files += _kustomization_files(path, seen)
        else:
            files.append(path)
    return files


def _documents(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def _base_resources() -> list[dict[str, Any]]:
    return [d for f in _kustomization_files(K8S / "base") for d in _documents(f)]


def _by_kind_name() -> dict[tuple[str, str], dict[str, Any]]:
    return {(d["kind"], d["metadata"]["name"]): d for d in _base_resources()}


def test_kustomizations_list_every_manifest() -> None:
    listed = set(_kustomization_files(K8S / "overlays" / "venue"))
    on_disk = {p.resolve() for p in K8S.rglob("*.yaml") if p.name != "kustomization.yaml"}
    assert on_disk == listed, f"not listed by any kustomization: {sorted(map(str, on_disk - listed))}"


def test_every_manifest_validates_against_the_kubernetes_schemas() -> None:
    import kubernetes_validate

    checked = 0
    for path in _kustomization_files(K8S / "overlays" / "venue"):
        for doc in _documents(path):
            if doc["apiVersion"].startswith("keda.sh/"):
                continue  # a CRD: no bundled schema; test_keda_scaled_object checks it field by field
            if path.parent.name == "venue" and path.name != "namespace.yaml":
                # A strategic-merge patch: partial on purpose, validated merged into its base below.
                base = _by_kind_name()[(doc["kind"], doc["metadata"]["name"])]
                merged = {**base, "data": {**base.get("data", {}), **doc.get("data", {})}}
                kubernetes_validate.validate(merged, K8S_VERSION, strict=True)
            else:
                kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
            checked += 1
    assert checked >= 15


def test_keda_scaled_object_scales_pose_workers_on_video_chunks_lag() -> None:
    resources = _by_kind_name()
    scaled = resources[("ScaledObject", "pose-worker")]
    assert scaled["apiVersion"] == "keda.sh/v1alpha1"
    spec = scaled["spec"]
    assert set(spec) <= {
        "scaleTargetRef",
        "minReplicaCount",
        "maxReplicaCount",
        "pollingInterval",
        "cooldownPeriod",
        "idleReplicaCount",
        "fallback",
        "advanced",
        "triggers",
    }
    target = spec["scaleTargetRef"]
    assert (target.get("kind", "Deployment"), target["name"]) == ("Deployment", "pose-worker")
    assert ("Deployment", "pose-worker") in resources
    assert spec["minReplicaCount"] == 0 and spec["maxReplicaCount"] >= 1
    assert all(isinstance(spec[k], int) for k in ("pollingInterval", "cooldownPeriod"))
    [trigger] = spec["triggers"]
    assert trigger["type"] == "kafka"
    meta = trigger["metadata"]
    assert meta["topic"] == "video.chunks"
    assert meta["consumerGroup"] == "meetvar-pose"  # the group run_pose_worker joins
    assert meta["bootstrapServers"] == "kafka:9092"
    # KEDA reads trigger metadata as strings only.
    assert all(isinstance(v, str) for v in meta.values()), meta
    assert int(meta["lagThreshold"]) > 0
    from meetvar import services

    assert '"meetvar-pose", VIDEO_CHUNKS' in Path(services.__file__).read_text()


def _pod_spec(resource: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = resource["spec"]["template"]["spec"]
    return spec


def test_workloads_run_non_root_with_probes_and_limits() -> None:
    workloads = [d for d in _base_resources() if d["kind"] in ("Deployment", "StatefulSet")]
    names = {d["metadata"]["name"] for d in workloads}
    assert {"kafka", "postgres", "seaweedfs", *MEETVAR_SERVICES} <= names
    for workload in workloads:
        pod = _pod_spec(workload)
        name = workload["metadata"]["name"]
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        assert pod["automountServiceAccountToken"] is False, name
        for container in pod["containers"]:
            sc = container["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False and sc["capabilities"]["drop"] == ["ALL"], name
            assert "readinessProbe" in container and "livenessProbe" in container, name
            assert {"cpu", "memory"} <= set(container["resources"]["limits"]), name
            if name in MEETVAR_SERVICES:
                assert pod["securityContext"]["runAsUser"] == MEETVAR_UID, name
                assert sc["readOnlyRootFilesystem"] is True, name
                assert container["args"][0] == "meetvar", name


def test_dashboard_probes_health_and_ingress_has_tls() -> None:
    resources = _by_kind_name()
    container = _pod_spec(resources[("Deployment", "dashboard")])["containers"][0]
    for probe in ("readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"]["path"] == "/api/health"
    env = {e["name"]: e for e in container["env"]}
    assert env["MEETVAR_DB"]["value"].startswith("postgresql+psycopg://")
    assert env["POSTGRES_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == "meetvar-secrets"
    ingress = resources[("Ingress", "dashboard")]
    assert ingress["spec"]["tls"][0]["secretName"]
    assert ingress["spec"]["tls"][0]["hosts"][0] == ingress["spec"]["rules"][0]["host"]
    config = resources[("ConfigMap", "meetvar-config")]["data"]
    assert config["MEETVAR_STORE"].startswith("s3://")
    assert config["MEETVAR_BROKER"] == "kafka:9092"


def test_pose_workers_are_scheduled_on_gpus() -> None:
    deployment = _by_kind_name()[("Deployment", "pose-worker")]
    pod = _pod_spec(deployment)
    container = pod["containers"][0]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert pod["nodeSelector"]
    assert any(t["key"] == "nvidia.com/gpu" for t in pod["tolerations"])
    assert container["args"] == ["meetvar", "pose-worker"]
    assert container["image"].startswith("meetvar-gpu")
    assert deployment["spec"]["replicas"] == 0  # KEDA owns the count


CHECKOV_CONFIG = ("--config-file", ".checkov.yaml")


def _checkov() -> str | None:
    local = ROOT / ".venv-checkov" / "bin" / "checkov"
    return str(local) if local.exists() else shutil.which("checkov")


def test_checkov_skips_have_reasons() -> None:
    text = (ROOT / ".checkov.yaml").read_text()
    skips = yaml.safe_load(text)["skip-check"]
    assert skips
    for check in skips:
        line = next(line for line in text.splitlines() if re.match(rf"\s*-\s*{check}\b", line))
        assert re.search(r"#\s*reason:\s*\S.{20,}", line), f"{check} is skipped without a reason"


def test_checkov_passes_on_the_manifests() -> None:
    checkov = _checkov()
    assert checkov is not None, "checkov is not installed: `make deploy-deps` puts it in .venv-checkov"
    env = {**os.environ, "BC_SKIP_MAPPING": "TRUE", "CHECKOV_RUN_SCA_PACKAGE_SCAN_V2": "false"}
    result = subprocess.run(
        [checkov, "-d", "deploy/k8s", "--framework", "kubernetes", "--compact", "--quiet", *CHECKOV_CONFIG],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert re.search(r"Passed checks: [1-9]\d*, Failed checks: 0", result.stdout), result.stdout[-2000:]


# --- compose ---------------------------------------------------------------------------------


def _compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    return data


def test_compose_has_the_venue() -> None:
    services = _compose()["services"]
    assert services["kafka"]["image"].startswith("apache/kafka:")
    kafka_env = services["kafka"]["environment"]
    assert kafka_env["KAFKA_PROCESS_ROLES"] == "broker,controller"  # KRaft, no ZooKeeper
    assert not any("zookeeper" in name for name in services)
    assert services["postgres"]["image"].startswith("postgres:")
    assert services["seaweedfs"]["image"].startswith("chrislusf/seaweedfs:")
    assert "-s3" in services["seaweedfs"]["command"]
    assert services["caddy"]["image"].startswith("caddy:")
    assert {"443:443"} <= set(services["caddy"]["ports"])
    commands = {name: s.get("command", []) for name, s in services.items()}
    for name, sub in (
        ("dashboard", "dashboard"),
        ("camera", "camera"),
        ("archiver", "archiver"),
        ("referee", "referee"),
        ("pose", "pose-worker"),
    ):
        assert commands[name][:2] == ["meetvar", sub], name
    dashboard_env = services["dashboard"]["environment"]
    assert dashboard_env["MEETVAR_DB"].startswith("postgresql+psycopg://")
    assert "MEETVAR_PUBLIC_URL" in dashboard_env
    for name in ("dashboard", "camera", "archiver", "referee", "pose"):
        assert services[name]["environment"]["MEETVAR_STORE"].startswith("${MEETVAR_STORE:-s3://"), name
        assert "MEETVAR_BROKER" in services[name]["environment"], name
        # No two meetvar services share a disk: claim checks and the archive go through S3.
        for volume in services[name].get("volumes", []):
            assert volume.split(":")[0] not in ("objects",), name
    gpu = services["pose"]["deploy"]["resources"]["reservations"]["devices"][0]
    assert gpu["driver"] == "nvidia" and "gpu" in gpu["capabilities"]
    assert services["pose"]["build"]["dockerfile"] == "deploy/Dockerfile.gpu"


def test_compose_services_have_healthchecks_and_run_non_root() -> None:
    services = _compose()["services"]
    # Images whose entrypoints need root to own their volumes, then drop it (deploy/README.md, "Users").
    root_entrypoint = {"seaweedfs", "caddy"}
    for name, service in services.items():
        assert service.get("healthcheck", {}).get("test"), f"{name} has no healthcheck"
        if name in root_entrypoint:
            continue
        user = str(service.get("user", ""))
        assert user and user.split(":")[0] not in ("0", "root"), f"{name} does not run as a non-root user"
    assert services["caddy"]["cap_drop"] == ["ALL"]


def test_dockerfiles_are_non_root_with_a_cmd() -> None:
    for name in ("Dockerfile", "Dockerfile.gpu"):
        text = (DEPLOY / name).read_text()
        users = re.findall(r"^USER\s+(\S+)", text, re.M)
        assert users and users[-1].split(":")[0] not in ("0", "root"), name
        assert re.search(r'^CMD \["meetvar", ', text, re.M), name
    gpu = (DEPLOY / "Dockerfile.gpu").read_text()
    assert "download.pytorch.org/whl/cu" in gpu and "WITH_TENSORRT" in gpu
    assert "psycopg" in (ROOT / "pyproject.toml").read_text()


def test_compose_variables_are_documented() -> None:
    text = (DEPLOY / "compose.yaml").read_text()
    variables = set(re.findall(r"\$\{([A-Z][A-Z0-9_]*)", text))
    readme = (DEPLOY / "README.md").read_text()
    missing = sorted(v for v in variables if f"`{v}`" not in readme)
    assert not missing, f"deploy/README.md does not document {missing}"
