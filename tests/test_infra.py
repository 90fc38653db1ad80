"""infra/k8s: every manifest and the Prefect work-pool template against the Kubernetes schemas, and our rules.

The schemas are the JSON schemas of the Kubernetes OpenAPI, bundled offline by ``kubernetes-validate``, used
strictly (an unknown field fails, as ``kubectl apply --validate=strict`` would): checked for the oldest
Kubernetes we support and for the newest the package bundles.
"""

from __future__ import annotations

import copy
import json
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml
from prefect.utilities.schema_tools.validation import is_valid_schema, validate
from prefect.utilities.templating import apply_values, find_placeholders

K8S = Path(__file__).resolve().parents[1] / "infra" / "k8s"
MIN_K8S_VERSION = "1.30"
K8S_VERSIONS = (MIN_K8S_VERSION, kubernetes_validate.latest_version())
SECRET_WORDS = {"KEY", "KEYS", "SECRET", "PASSWORD", "TOKEN", "CREDENTIAL", "CREDENTIALS"}


def manifests() -> list[dict]:
    """Every object of every YAML manifest (the kustomization is kustomize's file, not an object)."""
    return [doc for path in sorted(K8S.glob("*.yaml")) if path.name != "kustomization.yaml"
            for doc in yaml.safe_load_all(path.read_text()) if doc]


def find(kind: str) -> dict:
    (found,) = [m for m in manifests() if m["kind"] == kind]
    return found


def template() -> dict:
    return json.loads((K8S / "work-pool-template.json").read_text())


def rendered_job(values: dict | None = None) -> dict:
    """The Job a Kubernetes worker would create: the variables' defaults (then ``values``) filled in, ``env``
    as a list and ``command`` split, as prefect-kubernetes does, and the two pod-spec fields it insists on
    dropped (``parallelism`` and ``completions`` belong to a Job's spec; the API server drops them from a pod)."""
    base = template()
    defaults = {name: prop["default"] for name, prop in base["variables"]["properties"].items()
                if prop.get("default") is not None}
    job = apply_values(base["job_configuration"]["job_manifest"], {**defaults, **(values or {})})
    pod = job["spec"]["template"]["spec"]
    container = pod["containers"][0]
    container["env"] = [{"name": k, "value": v} for k, v in container.get("env", {}).items()]
    container["args"] = shlex.split(container.get("args", "prefect flow-run execute"))
    job["metadata"]["generateName"] = "compactlm-run-"
    for field in ("parallelism", "completions"):
        assert pod.pop(field) == 1  # prefect-kubernetes refuses a template without them
    return job


def schema_check(resource: dict, version: str) -> None:
    kubernetes_validate.validate(resource, version, strict=True)


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_every_manifest_and_the_work_pool_job_match_the_kubernetes_schema(version):
    resources = manifests()
    assert sorted(r["kind"] for r in resources) == ["ConfigMap", "Deployment", "Service"]
    for resource in resources:
        schema_check(resource, version)
    schema_check(rendered_job(), version)
    schema_check(rendered_job({"image": "registry.example.com/compactlm-worker:1.0", "env": {"EXTRA": "1"},
                               "cpu_limit": "4", "namespace": "ml", "service_account_name": "runner"}), version)


def test_the_schema_check_catches_a_misspelt_field_or_a_wrong_type():
    deployment = find("Deployment")
    typo = copy.deepcopy(deployment)
    container = typo["spec"]["template"]["spec"]["containers"][0]
    container["readinesProbe"] = container.pop("readinessProbe")
    with pytest.raises(kubernetes_validate.ValidationError, match="readinesProbe"):
        schema_check(typo, MIN_K8S_VERSION)
    wrong_type = copy.deepcopy(deployment)
    wrong_type["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] = "8000"
    with pytest.raises(kubernetes_validate.ValidationError, match="'8000' is not of type 'integer'"):
        schema_check(wrong_type, MIN_K8S_VERSION)
    job = rendered_job()
    job["spec"]["template"]["spec"]["containers"][0]["securityContext"]["runAsNonroot"] = True
    with pytest.raises(kubernetes_validate.ValidationError, match="runAsNonroot"):
        schema_check(job, MIN_K8S_VERSION)


def test_serve_probes_ports_resources_and_security():
    pod = find("Deployment")["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["image"].startswith("compactlm-serve")
    (port,) = container["ports"]
    assert port == {"name": "http", "containerPort": 8000, "protocol": "TCP"}
    assert container["command"][-4:] == ["--host", "0.0.0.0", "--port", "8000"]
    assert container["readinessProbe"]["httpGet"] == {"path": "/ready", "port": "http"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/health", "port": "http"}
    assert container["startupProbe"]["httpGet"] == {"path": "/health", "port": "http"}
    assert container["livenessProbe"]["initialDelaySeconds"] >= 30
    startup = container["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 120  # room for slow imports
    check_resources(container["resources"], min_memory_mib=1626)  # SmolLM2-135M's measured peak
    check_locked_down(pod, container)

    service = find("Service")
    assert service["spec"]["type"] == "ClusterIP"
    assert service["spec"]["selector"].items() <= find("Deployment")["spec"]["template"]["metadata"]["labels"].items()
    assert service["spec"]["ports"][0]["targetPort"] == "http"


def test_keys_come_from_a_secret_and_the_tracking_uri_from_the_configmap():
    (container,) = find("Deployment")["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e for e in container["env"]}
    assert env["COMPACTLM_API_KEYS"]["valueFrom"]["secretKeyRef"] == {"name": "compactlm-api-keys", "key": "api-keys"}
    ref = env["MLFLOW_TRACKING_URI"]["valueFrom"]["configMapKeyRef"]
    config_map = find("ConfigMap")
    assert ref["name"] == config_map["metadata"]["name"] and ref["key"] in config_map["data"]
    assert "kubectl create secret generic compactlm-api-keys" in (K8S / "README.md").read_text()


def test_no_manifest_holds_a_secret():
    resources = manifests()
    assert "Secret" not in {r["kind"] for r in resources}  # created with kubectl, never committed
    envs = [e for r in resources if r["kind"] == "Deployment"
            for c in r["spec"]["template"]["spec"]["containers"] for e in c.get("env", [])]
    literals = {e["name"]: e["value"] for e in envs if "value" in e}
    literals |= find("ConfigMap")["data"]
    literals |= template()["variables"]["properties"]["env"]["default"]
    assert all(not secret_like(name) for name in literals), literals
    assert any(secret_like(e["name"]) for e in envs)  # ...while the rule does see COMPACTLM_API_KEYS


def secret_like(name: str) -> bool:
    """COMPACTLM_API_KEYS or AWS_SECRET_ACCESS_KEY, not TOKENIZERS_PARALLELISM."""
    return bool(SECRET_WORDS & set(re.split(r"[_.-]", name.upper())))


def test_the_work_pool_template_is_a_valid_prefect_kubernetes_base_job_template():
    base = template()
    assert set(base) == {"job_configuration", "variables"}
    variables = base["variables"]
    jsonschema.validators.validator_for(variables).check_schema(variables)  # a valid JSON Schema...
    is_valid_schema(variables)  # ...as Prefect reads it
    defaults = {name: prop["default"] for name, prop in variables["properties"].items() if "default" in prop}
    assert not validate(defaults, variables, ignore_required=True)  # every default fits its own schema
    used = {p.name for value in base["job_configuration"].values() for p in find_placeholders(json.dumps(value))}
    assert used <= set(variables["properties"])  # what the Prefect server checks when the pool is created

    job = base["job_configuration"]["job_manifest"]
    pod = job["spec"]["template"]["spec"]
    assert (job["apiVersion"], job["kind"], pod["restartPolicy"], pod["containers"][0]["name"]) == (
        "batch/v1", "Job", "Never", "prefect-job")  # what prefect-kubernetes requires of a template
    assert defaults["image"] == "compactlm-worker"

    pod = rendered_job()["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["args"] == ["prefect", "flow-run", "execute"]
    check_resources(container["resources"], min_memory_mib=5800, cpu_limit=False)  # the demo run's peak RSS
    check_locked_down(pod, container)
    assert {"configMapRef": {"name": "compactlm-config"}} in container["envFrom"]
    assert "DVC_SITE_CACHE_DIR" in {e["name"] for e in container["env"]}  # else DVC writes to /var/tmp


def test_the_kustomization_lists_every_manifest():
    listed = yaml.safe_load((K8S / "kustomization.yaml").read_text())["resources"]
    assert sorted(listed) == sorted(p.name for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")
    if shutil.which("kubectl") is None:
        return
    built = subprocess.run(["kubectl", "kustomize", str(K8S)], capture_output=True, text=True, timeout=60)
    assert built.returncode == 0, built.stderr
    assert [d["kind"] for d in yaml.safe_load_all(built.stdout)] == ["ConfigMap", "Service", "Deployment"]


def check_resources(resources: dict, min_memory_mib: float, cpu_limit: bool = True) -> None:
    requests, limits = resources["requests"], resources["limits"]
    assert requests["cpu"] and mebibytes(requests["memory"]) >= min_memory_mib
    assert mebibytes(limits["memory"]) >= mebibytes(requests["memory"])
    if cpu_limit:
        assert cores(limits["cpu"]) >= cores(requests["cpu"])


def check_locked_down(pod: dict, container: dict) -> None:
    """Non-root uid 10001, no privilege escalation, no capability, a read-only root with writable volumes."""
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] == 10001
    assert pod["automountServiceAccountToken"] is False
    security = container["securityContext"]
    assert security["allowPrivilegeEscalation"] is False and security["capabilities"]["drop"] == ["ALL"]
    assert security["readOnlyRootFilesystem"] is True
    volumes = {v["name"] for v in pod["volumes"] if "emptyDir" in v}
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    assert {"/tmp", "/data"} <= set(mounts) and set(mounts.values()) <= volumes
    env = {e["name"]: e["value"] for e in container["env"] if "value" in e}
    assert {"HOME", "COMPACTLM_HOME"} <= set(env)
    for name in ("HOME", "COMPACTLM_HOME", "DVC_SITE_CACHE_DIR"):  # where the processes write
        assert name not in env or any(Path(env[name]).is_relative_to(path) for path in mounts), (name, env[name])


def mebibytes(quantity: str) -> float:
    number, unit = re.fullmatch(r"([0-9.]+)([KMGT]i)?", quantity).groups()
    return float(number) * {"Ki": 2**-10, "Mi": 1, "Gi": 2**10, "Ti": 2**20, None: 2**-20}[unit]


def cores(quantity: str) -> float:
    return float(quantity[:-1]) / 1000 if quantity.endswith("m") else float(quantity)


def test_the_grafana_dashboard_queries_only_metrics_the_service_exposes():
    """infra/grafana/compactlm-service.json: every PromQL metric name is one ``GET /metrics`` really serves."""
    from datetime import UTC, datetime

    from compactlm.serving.http.metrics import ServiceMetrics

    dashboard = json.loads((K8S.parent / "grafana" / "compactlm-service.json").read_text())
    metrics = ServiceMetrics()  # one sample of each labelled family, so every series name appears
    metrics.requests.labels(route="/v1/completions", method="POST", status="200", version="1").inc()
    metrics.latency.labels(route="/v1/completions", version="1").observe(0.1)
    metrics.first_token.observe(0.01)
    metrics.finished.labels(reason="stop").inc()
    metrics.rejected.labels(reason="queue_full").inc()
    metrics.feedback.labels(rating="down", version="1").inc()
    metrics.traffic_dropped.labels(reason="queue_full").inc()
    metrics.set_model("m", "1", "fp32")
    metrics.watch_traffic(lambda: 0)
    metrics.watch_queue(lambda: 0, lambda: 0)
    metrics.watch_drift(lambda: [{"check": "length", "model_version": "1", "statistic": 0.1, "threshold": 0.2,
                                  "drifted": False, "created_at": datetime.now(UTC)}])
    exposed = set(re.findall(r"^(compactlm_\w+)", metrics.render().decode(), re.M))
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    assert len(exprs) >= 12
    queried = {name for expr in exprs for name in re.findall(r"\b(compactlm_\w+)", expr)}
    assert queried - exposed == set(), f"the dashboard queries series the service does not expose: {queried - exposed}"
    for needed in ("compactlm_requests_total", "compactlm_request_latency_seconds_bucket", "compactlm_queue_depth",
                   "compactlm_completion_tokens_total", "compactlm_feedback_total", "compactlm_drift_statistic"):
        assert needed in queried, needed  # requests, latency, queue, tokens, feedback, drift: all on the dashboard
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids)) and all(p["datasource"]["uid"] == "${datasource}" for p in dashboard["panels"])
