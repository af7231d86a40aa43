"""The cluster path, offline: compile, submit and schedule.

- ``visiontfx compile``: the KubeflowV2DagRunner output parses as a KFP
  PipelineSpec (and as the kfp client reads it), its tasks and edges are the
  DAG of ``create_pipeline`` — the local runner's, but for the baseline
  resolver the platforms handle differently — the runtime parameters carry
  the config's values as defaults, and compiling twice gives the same bytes.
- ``visiontfx submit`` / ``schedule``: the real ``kfp`` 2.5 client and the real
  ``google-cloud-aiplatform`` client talk to a loopback HTTP server that
  records their requests (and answers just enough for them to proceed).
"""

from __future__ import annotations

import argparse
import dataclasses
import http.server
import json
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
import yaml

import visiontfx  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow)
from visiontfx.pipeline.config import ConfigError, load_config

REPO = Path(__file__).resolve().parent.parent
TINY_CONFIG = REPO / "pipeline" / "configs" / "tiny.yaml"
KUBEFLOW_SETTINGS = (
    "kubeflow.image=registry.example.com/visiontfx:1.2.3",
    "kubeflow.pipeline_root=gs://bucket-under-test/pipelines",
    "kubeflow.data_root=gs://bucket-under-test/data/fashion",
    "kubeflow.serving_dir=gs://bucket-under-test/serving",
    "kubeflow.experiment=visiontfx-test",
)
TOKEN = "token-from-the-environment"


def cluster_config(*overrides: str) -> Any:
    return load_config(TINY_CONFIG, [*KUBEFLOW_SETTINGS, *overrides])


@pytest.fixture(scope="module")
def compiled(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The tiny config compiled for both targets (TFX is imported once, here)."""
    from visiontfx.pipeline.kubeflow import compile_pipeline

    out = tmp_path_factory.mktemp("compiled")
    config = cluster_config()
    return {
        "kubeflow": Path(compile_pipeline(config, out / "pipeline.yaml", "kubeflow")),
        "vertex": Path(compile_pipeline(config, out / "pipeline.json", "vertex")),
    }


def spec_of(path: Path) -> dict[str, Any]:
    from visiontfx.pipeline.compiled_spec import load_document, pipeline_spec_of

    return pipeline_spec_of(load_document(path))


# --------------------------------------------------------------------------
# compile


@pytest.mark.parametrize("target", ["kubeflow", "vertex"])
def test_compiled_file_parses_as_a_kfp_pipeline_spec(compiled: dict[str, Path], target: str) -> None:
    from google.protobuf import json_format
    from kfp.pipeline_spec import pipeline_spec_pb2

    document = yaml.safe_load(compiled[target].read_text())
    if target == "vertex":
        assert set(document) == {"displayName", "labels", "pipelineSpec", "runtimeConfig"}
        assert document["runtimeConfig"]["gcsOutputDirectory"] == "gs://bucket-under-test/pipelines"
        document = document["pipelineSpec"]
    spec = json_format.ParseDict(document, pipeline_spec_pb2.PipelineSpec())  # strict: no unknown fields
    assert spec.pipeline_info.name == "visiontfx-tiny"
    assert spec.schema_version == "2.1.0"
    assert spec.default_pipeline_root == "gs://bucket-under-test/pipelines"
    executors = document["deploymentSpec"]["executors"].values()
    images = {executor["container"]["image"] for executor in executors if "container" in executor}
    assert images == {"registry.example.com/visiontfx:1.2.3"}


def test_kfp_client_reads_the_yaml_as_it_submits_it(compiled: dict[str, Path]) -> None:
    from kfp.client.client import _extract_pipeline_yaml

    doc = _extract_pipeline_yaml(str(compiled["kubeflow"]))
    assert doc.pipeline_spec.pipeline_info.name == "visiontfx-tiny"
    assert doc.to_dict() == spec_of(compiled["kubeflow"])  # exactly what goes into the request


def compiled_graph(spec: dict[str, Any]) -> tuple[set[str], set[tuple[str, str]]]:
    """Task names and producer -> consumer edges (declared dependencies and artifact inputs), but
    for the InputFingerprint task compile adds in front of the ExampleGen (no DAG node)."""
    from visiontfx.pipeline.kfp_fingerprint import TASK

    tasks = {name: task for name, task in spec["root"]["dag"]["tasks"].items() if name != TASK}
    edges = set()
    for name, task in tasks.items():
        producers = set(task.get("dependentTasks", [])) - {TASK}
        for artifact in task.get("inputs", {}).get("artifacts", {}).values():
            if "taskOutputArtifact" in artifact:
                producers.add(artifact["taskOutputArtifact"]["producerTask"])
        edges |= {(producer, name) for producer in producers}
    return set(tasks), edges


def dag_graph(components: Any) -> tuple[set[str], set[tuple[str, str]]]:
    return {c.id for c in components}, {(u.id, c.id) for c in components for u in c.upstream_nodes}


def collapse(task: str, node_ids: set[str]) -> str:
    """The DAG node a compiled task comes from: a Resolver compiles to one task per output."""
    if task in node_ids:
        return task
    owners = [node for node in node_ids if task.startswith(f"{node}-") and task.endswith("-resolver")]
    assert len(owners) == 1, f"compiled task {task!r} matches no DAG node"
    return owners[0]


@pytest.mark.parametrize("target", ["kubeflow", "vertex"])
def test_tasks_and_edges_are_the_dag(compiled: dict[str, Path], target: str) -> None:
    from tfx import v1 as tfx

    from visiontfx.pipeline.kubeflow import build_pipeline
    from visiontfx.pipeline.local_runner import local_pipeline

    config = cluster_config()
    nodes, edges = dag_graph(build_pipeline(config, target).components)  # create_pipeline, cluster arguments
    tasks, task_edges = compiled_graph(spec_of(compiled[target]))
    assert {collapse(task, nodes) for task in tasks} == nodes
    collapsed = {(collapse(a, nodes), collapse(b, nodes)) for a, b in task_edges}
    assert {(a, b) for a, b in collapsed if a != b} == edges

    # ... and that DAG is the local runner's, but for the baseline resolver: Vertex resolves
    # TFX's stock strategy (no candidate input), open-source KFP cannot run resolvers at all;
    # and the drift check, which needs a custom resolver strategy (docs/continuous_training.md).
    local_only = {"previous_trained_statistics_resolver", "DistributionValidator", "DriftGate"}
    local = [c for c in local_pipeline(config)[1].components if c.id not in local_only]
    resolvers = {c.id for c in local if isinstance(c, tfx.dsl.Resolver)}
    local_nodes, local_edges = dag_graph(local)
    assert resolvers == {"latest_blessed_model_resolver"}
    assert nodes - resolvers == local_nodes - resolvers
    assert {e for e in edges if not set(e) & resolvers} == {e for e in local_edges if not set(e) & resolvers}
    evaluator_inputs = spec_of(compiled[target])["root"]["dag"]["tasks"]["Evaluator"]["inputs"]["artifacts"]
    if target == "vertex":
        assert nodes == local_nodes
        assert ("latest_blessed_model_resolver", "Evaluator") in edges
        assert "baseline_model" in evaluator_inputs
    else:
        assert not nodes & resolvers
        assert "baseline_model" not in evaluator_inputs


def test_runtime_parameters_default_to_the_config(compiled: dict[str, Path]) -> None:
    from google.protobuf import json_format
    from tensorflow_model_analysis import EvalConfig

    from visiontfx.components.evaluator.eval_config import build_eval_config
    from visiontfx.pipeline.dag import trainer_custom_config

    config = cluster_config()
    spec = spec_of(compiled["kubeflow"])
    parameters = spec["root"]["inputDefinitions"]["parameters"]
    assert set(parameters) == {"data_root", "trainer_custom_config", "eval_config"}
    assert {p["parameterType"] for p in parameters.values()} == {"STRING"}
    assert parameters["data_root"]["defaultValue"] == "gs://bucket-under-test/data/fashion"

    trainer = json.loads(parameters["trainer_custom_config"]["defaultValue"])
    # No shared checkpoint folder under the compiled root: a run may override the root.
    assert trainer == json.loads(json.dumps(trainer_custom_config(config, "")))
    assert trainer["checkpoint_root"] == ""
    assert trainer["training"]["warmup_epochs"] == config.training.warmup_epochs  # the epochs

    evaluation = json_format.Parse(parameters["eval_config"]["defaultValue"], EvalConfig())
    expected = build_eval_config(config.evaluation.min_accuracy, config.evaluation.max_accuracy_drop)
    assert evaluation == expected  # the accuracy threshold (and the allowed drop)

    tasks = spec["root"]["dag"]["tasks"]
    wiring = {
        ("ImageExampleGen", "input_base"): "data_root",
        ("Trainer", "custom_config"): "trainer_custom_config",
        ("Evaluator", "eval_config"): "eval_config",
    }
    for (task, key), parameter in wiring.items():
        assert tasks[task]["inputs"]["parameters"][key] == {"componentInputParameter": parameter}

    job = json.loads(compiled["vertex"].read_text())
    assert job["runtimeConfig"]["parameterValues"] == {
        name: p["defaultValue"] for name, p in parameters.items()
    }


def test_tfrecord_inputs_compile_with_their_class_names(tmp_path: Path) -> None:
    """On Kubeflow the data root is a runtime parameter: labels.txt cannot be read at
    compile time, so TFRecord inputs need data.class_names, and the Trainer gets them."""
    from visiontfx.pipeline.kubeflow import compile_pipeline

    tfrecord = ["data.source=tfrecord", "data.path=/mnt/data/records"]
    with pytest.raises(ConfigError, match=r"Set data\.class_names"):
        compile_pipeline(cluster_config(*tfrecord), tmp_path / "no-names.yaml", "kubeflow")
    path = compile_pipeline(
        cluster_config(*tfrecord, "data.class_names=[shirt, shoe, bag]"), tmp_path / "named.yaml", "kubeflow"
    )
    parameters = spec_of(Path(path))["root"]["inputDefinitions"]["parameters"]
    trainer = json.loads(parameters["trainer_custom_config"]["defaultValue"])
    assert trainer["class_names"] == ["shirt", "shoe", "bag"]
    assert "ImportExampleGen" in spec_of(Path(path))["root"]["dag"]["tasks"]


def test_edge_export_and_bulk_inference_compile(tmp_path: Path) -> None:
    """EdgeExport (a custom artifact type) feeds the Pusher; inference.path adds a BulkInferrer step."""
    from visiontfx.pipeline.kubeflow import compile_pipeline

    path = compile_pipeline(
        cluster_config("inference.path=gs://bucket-under-test/unlabelled"), tmp_path / "bulk.yaml", "kubeflow"
    )
    spec = spec_of(Path(path))
    tasks, edges = compiled_graph(spec)
    assert {"EdgeExport", "InferenceExampleGen", "BulkInferrer"} <= tasks
    assert {
        ("EdgeExport", "Pusher"),
        ("InferenceExampleGen", "BulkInferrer"),
        ("Evaluator", "BulkInferrer"),
    } <= (edges)
    pusher_inputs = spec["root"]["dag"]["tasks"]["Pusher"]["inputs"]["artifacts"]
    assert pusher_inputs["edge_model"]["taskOutputArtifact"]["producerTask"] == "EdgeExport"
    outputs = spec["components"]["EdgeExport"]["outputDefinitions"]["artifacts"]
    assert "title: visiontfx.EdgeModel" in outputs["edge_model"]["artifactType"]["instanceSchema"]


def test_spec_depends_on_nothing_of_the_compiling_machine(compiled: dict[str, Path]) -> None:
    from visiontfx.pipeline.kubeflow import IMAGE_SCHEMA_DIR

    for path in compiled.values():
        assert str(REPO) not in path.read_text()
    schema_file = spec_of(compiled["kubeflow"])["root"]["dag"]["tasks"]["ImportSchemaGen"]["inputs"][
        "parameters"
    ]
    assert schema_file["schema_file"]["runtimeValue"]["constant"] == f"{IMAGE_SCHEMA_DIR}/fashion_mnist.pbtxt"
    assert (REPO / "schemas" / "fashion_mnist.pbtxt").is_file()  # the file the image ships there


def test_compiling_twice_gives_the_same_bytes(compiled: dict[str, Path], tmp_path: Path) -> None:
    from visiontfx.pipeline.kubeflow import compile_pipeline

    config = cluster_config()
    for target, first in compiled.items():
        again = Path(compile_pipeline(config, tmp_path / target / first.name, target))
        assert again.read_bytes() == first.read_bytes()
        assert oct(again.stat().st_mode & 0o077) != "0o0", "group/other bits follow the umask"


@pytest.mark.parametrize(("root", "target"), [("gs://b/p", "kubeflow"), ("gs://b", "vertex")])
def test_pipeline_root_from_the_config(tmp_path: Path, root: str, target: str) -> None:
    from visiontfx.pipeline.kubeflow import compile_pipeline

    path = compile_pipeline(cluster_config(f"kubeflow.pipeline_root={root}"), tmp_path / "p", target)  # type: ignore[arg-type]
    spec = spec_of(Path(path))
    assert spec["defaultPipelineRoot"] == root
    trainer = json.loads(
        spec["root"]["inputDefinitions"]["parameters"]["trainer_custom_config"]["defaultValue"]
    )
    assert trainer["checkpoint_root"] == ""  # the Trainer backs up inside its own output


@pytest.mark.parametrize(
    ("root", "target", "reason"),
    [
        ("/mnt/pipelines", "kubeflow", "mounted volume"),  # KFP's launcher: "unsupported Cloud bucket"
        ("outputs/pipelines", "kubeflow", "gs://"),
        ("minio://mlpipeline/v2", "kubeflow", "no S3 filesystem"),  # KFP takes it, TensorFlow cannot write it
        ("s3://b/p", "kubeflow", "no S3 filesystem"),
        ("s3://b/p", "vertex", "gs://"),
    ],
)
def test_unusable_pipeline_roots_fail_before_compiling(root: str, target: str, reason: str) -> None:
    from visiontfx.pipeline.kubeflow import check_pipeline_root

    with pytest.raises(ConfigError, match="pipeline_root") as error:
        check_pipeline_root(root, target)  # type: ignore[arg-type]
    assert reason in str(error.value)


def run_command(module: Any, argv: list[str]) -> int:
    """``visiontfx <command> argv`` as cli.py runs it: the module's own parser and main()."""
    parser = argparse.ArgumentParser()
    module.add_arguments(parser)
    return module.main(parser.parse_args(argv))


def test_compile_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from visiontfx.pipeline import kubeflow

    output = tmp_path / "out" / "spec.yaml"
    argv = [
        "--config",
        str(TINY_CONFIG),
        "--output",
        str(output),
        *KUBEFLOW_SETTINGS,
        "training.warmup_epochs=7",
    ]
    assert run_command(kubeflow, argv) == 0
    spec = spec_of(output)
    default = spec["root"]["inputDefinitions"]["parameters"]["trainer_custom_config"]["defaultValue"]
    assert json.loads(default)["training"]["warmup_epochs"] == 7
    assert "10 tasks" in capsys.readouterr().out  # the DAG, EdgeExport and InputFingerprint


def test_command_modules_import_without_tensorflow() -> None:
    code = (
        "import sys, visiontfx.pipeline.kubeflow, visiontfx.tools.kubeflow_submit, "
        "visiontfx.tools.kubeflow_schedule\n"
        "heavy = [m for m in ('tfx', 'tensorflow', 'kfp', 'google.cloud.aiplatform') if m in sys.modules]\n"
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)


# --------------------------------------------------------------------------
# compile: what the task pods can reach, their command, their resources


@pytest.mark.parametrize(
    ("overrides", "target", "message"),
    [
        (["kubeflow.data_root=/mnt/data"], "kubeflow", r"'kubeflow\.data_root'.*set 'kubeflow\.data_pvc'"),
        (["kubeflow.serving_dir=outputs/serving"], "kubeflow", r"'kubeflow\.serving_dir'.*absolute path"),
        (["kubeflow.data_root="], "kubeflow", r"'kubeflow\.data_root' is ''"),
        (["kubeflow.data_root=s3://b/images"], "kubeflow", r"'kubeflow\.data_root'.*no S3 filesystem.*gs://"),
        (["kubeflow.serving_dir=minio://b/m"], "kubeflow", r"'kubeflow\.serving_dir'.*no S3 filesystem"),
        (["kubeflow.data_pvc=images"], "kubeflow", r"'kubeflow\.data_pvc' is set but.*not a path to mount"),
        (
            ["kubeflow.data_root=/mnt/d", "kubeflow.data_pvc=images"],
            "vertex",
            r"mounts no PersistentVolumeClaims",
        ),
        (["kubeflow.data_root=/mnt/data"], "vertex", r"'kubeflow\.data_root'.*/gcs/"),
    ],
)
def test_locations_the_pods_cannot_reach_are_refused(overrides: list[str], target: str, message: str) -> None:
    from visiontfx.pipeline.kubeflow import check_locations

    with pytest.raises(ConfigError, match=message):
        check_locations(cluster_config(*overrides), target)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("overrides", "target"),
    [
        (["kubeflow.data_root=/mnt/data", "kubeflow.data_pvc=images"], "kubeflow"),
        (["kubeflow.serving_dir=/models", "kubeflow.serving_pvc=models"], "kubeflow"),
        (["kubeflow.data_root=/gcs/bucket/images"], "vertex"),
    ],
)
def test_reachable_locations_pass(overrides: list[str], target: str) -> None:
    from visiontfx.pipeline.kubeflow import check_locations

    check_locations(cluster_config(*overrides), target)  # type: ignore[arg-type]


def test_tensorflow_really_has_no_s3_filesystem() -> None:
    """Why s3:// roots are refused; when this fails, TensorFlow gained one: allow s3:// again."""
    import tensorflow as tf

    assert "gs" in tf.io.gfile.get_registered_schemes()
    assert "s3" not in tf.io.gfile.get_registered_schemes()
    with pytest.raises(tf.errors.UnimplementedError, match="s3"):
        tf.io.gfile.exists("s3://bucket/key")


@pytest.fixture(scope="module")
def compiled_with_claims(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from visiontfx.pipeline.kubeflow import compile_pipeline

    config = cluster_config(
        "kubeflow.data_root=/mnt/images",
        "kubeflow.data_pvc=image-data",
        "kubeflow.serving_dir=/srv/models",
        "kubeflow.serving_pvc=served-models",
        "kubeflow.resources.trainer.gpu_count=2",
    )
    return Path(compile_pipeline(config, tmp_path_factory.mktemp("claims") / "pipeline.yaml", "kubeflow"))


def test_declared_claims_are_mounted_where_the_paths_are(compiled_with_claims: Path) -> None:
    from google.protobuf import json_format
    from kfp.client.client import _extract_pipeline_yaml

    from visiontfx.pipeline.compiled_spec import platform_spec_of

    platform = platform_spec_of(compiled_with_claims)
    executors = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    # Only the tasks that need them (InputFingerprint lists the data as ImageExampleGen reads it).
    assert set(executors) == {"ImageExampleGen_executor", "InputFingerprint_executor", "Pusher_executor"}
    assert executors["InputFingerprint_executor"] == executors["ImageExampleGen_executor"]
    assert executors["ImageExampleGen_executor"]["pvcMount"] == [
        {
            "constant": "image-data",
            "mountPath": "/mnt/images",
            "pvcNameParameter": {"runtimeValue": {"constant": "image-data"}},
        }
    ]
    assert executors["Pusher_executor"]["pvcMount"][0]["mountPath"] == "/srv/models"
    # What the kfp client sends: the spec plus this platform spec, as kfp-kubernetes writes it.
    doc = _extract_pipeline_yaml(str(compiled_with_claims))
    sent = json_format.MessageToDict(doc.platform_spec)
    assert sent["platforms"]["kubernetes"]["deploymentSpec"]["executors"] == executors
    spec = spec_of(compiled_with_claims)
    pusher = spec["root"]["dag"]["tasks"]["Pusher"]["inputs"]["parameters"]["push_destination"]
    assert "/srv/models/fashion" in pusher["runtimeValue"]["constant"]


def test_every_task_runs_our_entrypoint_with_its_declared_outputs(compiled: dict[str, Path]) -> None:
    from visiontfx.pipeline.compiled_spec import executor_containers
    from visiontfx.pipeline.kubeflow import ENTRYPOINT_COMMAND, OUTPUTS_SPEC_FLAG

    for target, path in compiled.items():
        spec = spec_of(path)
        containers = executor_containers(spec)
        del containers["InputFingerprint"]  # not a TFX component: test_input_fingerprint_task...
        assert len(containers) == 9  # the eight of the DAG and EdgeExport
        for component_id, container in containers.items():
            assert container["command"] == ENTRYPOINT_COMMAND, (target, component_id)
            args = container["args"]
            declared = json.loads(args[args.index(OUTPUTS_SPEC_FLAG) + 1])
            expected = spec["components"][component_id].get("outputDefinitions", {}).get("artifacts", {})
            assert declared == {"artifacts": expected} and expected, (target, component_id)


def test_input_fingerprint_task_feeds_the_example_gen_on_both_targets(compiled: dict[str, Path]) -> None:
    from visiontfx.pipeline import kfp_fingerprint

    for target, path in compiled.items():
        spec = spec_of(path)
        tasks = spec["root"]["dag"]["tasks"]
        task, example_gen = tasks[kfp_fingerprint.TASK], tasks["ImageExampleGen"]
        assert task["cachingOptions"].get("enableCache", False) is False, target  # runs every time
        assert example_gen["cachingOptions"]["enableCache"], target
        assert example_gen["inputs"]["parameters"]["input_fingerprint"] == {
            "taskOutputParameter": {
                "producerTask": kfp_fingerprint.TASK,
                "outputParameterKey": "input_fingerprint",
            }
        }
        assert kfp_fingerprint.TASK in example_gen["dependentTasks"]
        # It resolves exactly what ImageExampleGen is given (the data_root runtime parameter too).
        for name in ("source", "input_base", "options"):
            assert task["inputs"]["parameters"][name] == example_gen["inputs"]["parameters"][name], name
        container = spec["deploymentSpec"]["executors"]["InputFingerprint_executor"]["container"]
        gen_container = spec["deploymentSpec"]["executors"]["ImageExampleGen_executor"]["container"]
        assert container["command"] == kfp_fingerprint.COMMAND
        assert container["image"] == gen_container["image"] == "registry.example.com/visiontfx:1.2.3"
        assert container["resources"] == gen_container["resources"]


def test_resources_per_task_from_the_config(compiled: dict[str, Path], compiled_with_claims: Path) -> None:
    from visiontfx.pipeline.config import KubeflowResources

    containers = {
        label.removesuffix("_executor"): executor["container"]
        for label, executor in spec_of(compiled["kubeflow"])["deploymentSpec"]["executors"].items()
    }
    trainer, pusher = containers["Trainer"]["resources"], containers["Pusher"]["resources"]
    defaults = KubeflowResources()
    assert trainer == {
        "cpuRequest": 4.0,
        "cpuLimit": 8.0,
        "memoryRequest": 8.589934592,
        "memoryLimit": 17.179869184,
    }
    assert defaults.trainer.memory_limit == "16Gi" and defaults.trainer.cpu_limit == "8"
    assert pusher["cpuRequest"] == 0.5 and pusher["memoryLimit"] == 2**31 / 1e9
    assert all("accelerator" not in c["resources"] for c in containers.values())
    vertex = spec_of(compiled["vertex"])["deploymentSpec"]["executors"]["Trainer_executor"]["container"]
    assert vertex["resources"] == trainer

    gpu = spec_of(compiled_with_claims)["deploymentSpec"]["executors"]["Trainer_executor"]["container"]
    assert gpu["resources"]["accelerator"] == {"type": "nvidia.com/gpu", "count": "2"}


@pytest.mark.parametrize(
    ("overrides", "target", "message"),
    [
        (["kubeflow.resources.trainer.gpu_count=1"], "vertex", r"accelerator_type.*NVIDIA_TESLA_T4"),
        (
            [
                "kubeflow.resources.trainer.gpu_count=1",
                "kubeflow.resources.trainer.accelerator_type=NVIDIA_L4",
            ],
            "kubeflow",
            r"accelerator_type.*nvidia\.com/gpu",
        ),
    ],
)
def test_accelerator_types_follow_the_platform(overrides: list[str], target: str, message: str) -> None:
    from visiontfx.pipeline.kubeflow import container_resources

    with pytest.raises(ConfigError, match=message):
        container_resources(cluster_config(*overrides), "Trainer", target)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("override", "message"),
    [
        (
            "kubeflow.resources.trainer.cpu_request=16",
            r"'kubeflow\.resources\.trainer\.cpu_request' must not exceed",
        ),
        (
            "kubeflow.resources.pusher.memory_limit=2GB",
            r"'kubeflow\.resources\.pusher\.memory_limit'.*quantity",
        ),
        (
            "kubeflow.resources.evaluator.cpu_limit=0",
            r"'kubeflow\.resources\.evaluator\.cpu_limit' must be > 0",
        ),
        ("kubeflow.resources.trainer.gpu_count=-1", r"gpu_count' must be >= 0"),
        ("kubeflow.serving_pvc=Models_1", r"'kubeflow\.serving_pvc' must be a PersistentVolumeClaim name"),
        ("kubeflow.resources.gpu=1", r"Unknown config key 'kubeflow\.resources\.gpu'"),
    ],
)
def test_resource_and_claim_settings_are_validated(override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        cluster_config(override)


# --------------------------------------------------------------------------
# A loopback API server that records what the real clients send


@dataclasses.dataclass
class Request:
    method: str
    path: str  # without the query
    query: str
    headers: dict[str, str]
    body: Any


Route = Callable[[Request], "tuple[int, Any] | None"]


class RecordingServer:
    """A threaded HTTP server on 127.0.0.1 (a free port); ``route`` answers, every request is kept."""

    def __init__(self, route: Route) -> None:
        self.requests: list[Request] = []
        recorder = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def handle_one(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                path, _, query = self.path.partition("?")
                body = json.loads(raw) if raw.strip() else None
                request = Request(
                    self.command, path, query, {k.lower(): v for k, v in self.headers.items()}, body
                )
                recorder.requests.append(request)
                status, payload = route(request) or (404, {"error": {"code": 404, "message": "not found"}})
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PATCH = do_DELETE = handle_one  # noqa: N815 (http.server's names)

            def log_message(self, *args: Any) -> None:  # keep pytest's output readable
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> RecordingServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()

    def only(self, method: str, path: str) -> Request:
        found = [r for r in self.requests if r.method == method and r.path == path]
        assert len(found) == 1, (
            f"{method} {path}: {len(found)} requests in {[(r.method, r.path) for r in self.requests]}"
        )
        return found[0]


# --------------------------------------------------------------------------
# Kubeflow Pipelines (kfp 2.5, REST API v2beta1)


class FakeKfp:
    """Minimal valid answers of the KFP v2beta1 API; ``existing`` recurring runs can be listed."""

    API = "/apis/v2beta1"

    def __init__(self, existing: dict[str, str] | None = None) -> None:
        self.existing = existing or {}  # recurring run id -> display name

    def __call__(self, request: Request) -> tuple[int, Any] | None:
        method, path = request.method, request.path
        if path == f"{self.API}/healthz":
            return 200, {"multi_user": False}
        if path == f"{self.API}/experiments":
            if method == "GET":
                return 200, {}  # none yet: the client creates it
            return 200, {"experiment_id": "exp-1", "display_name": request.body["display_name"]}
        if path == f"{self.API}/runs" and method == "POST":
            return 200, {"run_id": "run-1", "display_name": request.body["display_name"]}
        if path == f"{self.API}/recurringruns":
            if method == "GET":
                runs = [{"recurring_run_id": k, "display_name": v} for k, v in self.existing.items()]
                return 200, {"recurringRuns": runs, "total_size": len(runs)}  # the API's own key names
            return 200, {"recurring_run_id": "rr-new", "display_name": request.body["display_name"]}
        if path.startswith(f"{self.API}/recurringruns/") and method == "DELETE":
            return 200, {}
        return None


@pytest.fixture
def kfp_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Credentials from the environment only; no kfp context file of the developer's."""
    import kfp

    for name in ("KFP_ENDPOINT", "KF_PIPELINES_ENDPOINT", "KFP_TOKEN", "KF_PIPELINES_SA_TOKEN_PATH"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("KFP_TOKEN", TOKEN)
    monkeypatch.setattr(kfp.Client, "_LOCAL_KFP_CONTEXT", str(tmp_path / "kfp-context.json"))


def proto_round_trip(spec: dict[str, Any]) -> dict[str, Any]:
    from google.protobuf import json_format
    from kfp.pipeline_spec import pipeline_spec_pb2

    return json_format.MessageToDict(json_format.ParseDict(spec, pipeline_spec_pb2.PipelineSpec()))


def test_submit_creates_a_run_in_the_experiment(compiled: dict[str, Path], kfp_env: None) -> None:
    from visiontfx.tools import kubeflow_submit

    with RecordingServer(FakeKfp()) as server:
        argv = ["--config", str(TINY_CONFIG), "--spec", str(compiled["kubeflow"]), "--endpoint", server.url]
        argv += [
            "--param",
            "data_root=/mnt/other/images",
            "--run-name",
            "nightly-1",
            "kubeflow.experiment=exp-a",
        ]
        assert run_command(kubeflow_submit, argv) == 0

    experiment = server.only("POST", "/apis/v2beta1/experiments").body
    assert experiment["display_name"] == "exp-a"
    run = server.only("POST", "/apis/v2beta1/runs")
    assert run.headers["authorization"] == f"Bearer {TOKEN}"
    assert run.body["experiment_id"] == "exp-1"
    assert run.body["display_name"] == "nightly-1"
    assert run.body["runtime_config"]["parameters"] == {"data_root": "/mnt/other/images"}
    assert run.body["pipeline_spec"] == proto_round_trip(spec_of(compiled["kubeflow"]))


def test_submit_sets_epochs_and_accuracy_bar_by_name(compiled: dict[str, Path], kfp_env: None) -> None:
    """Shorthand --params land inside the two JSON runtime parameters the tasks read."""
    from google.protobuf import json_format
    from tensorflow_model_analysis import EvalConfig

    from visiontfx.tools import kubeflow_submit

    spec = spec_of(compiled["kubeflow"])
    defaults = {name: p["defaultValue"] for name, p in spec["root"]["inputDefinitions"]["parameters"].items()}
    shorthands = ["warmup_epochs=3", "finetune_epochs=0", "min_accuracy=0.85", "max_accuracy_drop=0.02"]
    with RecordingServer(FakeKfp()) as server:
        argv = ["--config", str(TINY_CONFIG), "--spec", str(compiled["kubeflow"]), "--endpoint", server.url]
        for item in shorthands:
            argv += ["--param", item]
        assert run_command(kubeflow_submit, argv) == 0

    sent = server.only("POST", "/apis/v2beta1/runs").body["runtime_config"]["parameters"]
    assert set(sent) == {"trainer_custom_config", "eval_config"}
    trainer, default_trainer = (json.loads(t["trainer_custom_config"]) for t in (sent, defaults))
    assert (trainer["training"]["warmup_epochs"], trainer["training"]["finetune_epochs"]) == (3, 0)
    # Nothing else in the Trainer's config moved.
    del trainer["training"]["warmup_epochs"], trainer["training"]["finetune_epochs"]
    del default_trainer["training"]["warmup_epochs"], default_trainer["training"]["finetune_epochs"]
    assert trainer == default_trainer

    evaluation = json_format.Parse(sent["eval_config"], EvalConfig())  # still a valid EvalConfig
    threshold = next(
        m.threshold
        for m in evaluation.metrics_specs[0].metrics
        if m.class_name == "SparseCategoricalAccuracy"
    )
    assert threshold.value_threshold.lower_bound.value == pytest.approx(0.85)
    assert threshold.change_threshold.absolute.value == pytest.approx(-0.02)


def test_parameter_shorthands_combine_with_json_and_check_their_values(compiled: dict[str, Path]) -> None:
    from visiontfx.tools.kubeflow_submit import parse_parameters

    spec = spec_of(compiled["kubeflow"])
    edited = json.loads(
        spec["root"]["inputDefinitions"]["parameters"]["trainer_custom_config"]["defaultValue"]
    )
    edited["model"]["dropout"] = 0.4
    values = parse_parameters([f"trainer_custom_config={json.dumps(edited)}", "finetune_epochs=7"], spec)
    trainer = json.loads(values["trainer_custom_config"])
    assert trainer["model"]["dropout"] == 0.4 and trainer["training"]["finetune_epochs"] == 7
    with pytest.raises(ConfigError, match=r"min_accuracy=1.5 is outside"):
        parse_parameters(["min_accuracy=1.5"], spec)
    with pytest.raises(ConfigError, match="warmup_epochs must be int"):
        parse_parameters(["warmup_epochs=two"], spec)


def test_submit_without_spec_compiles_the_config_with_its_overrides(
    kfp_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    from visiontfx.tools import kubeflow_submit

    with RecordingServer(FakeKfp()) as server:
        monkeypatch.setenv("KFP_ENDPOINT", server.url)  # the endpoint from the environment
        argv = ["--config", str(TINY_CONFIG), *KUBEFLOW_SETTINGS, "training.warmup_epochs=9", "--no-cache"]
        assert run_command(kubeflow_submit, argv) == 0

    run = server.only("POST", "/apis/v2beta1/runs").body
    parameters = run["pipeline_spec"]["root"]["inputDefinitions"]["parameters"]
    assert json.loads(parameters["trainer_custom_config"]["defaultValue"])["training"]["warmup_epochs"] == 9
    tasks = run["pipeline_spec"]["root"]["dag"]["tasks"]
    assert {task.get("cachingOptions", {}).get("enableCache", False) for task in tasks.values()} == {False}
    assert run["runtime_config"]["parameters"] == {}
    assert run["display_name"].startswith("visiontfx-tiny-")


def test_an_api_refusal_is_reported_not_raised(
    compiled: dict[str, Path], kfp_env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    from visiontfx.tools import kubeflow_submit

    def forbid_runs(request: Request) -> tuple[int, Any] | None:
        if request.path == "/apis/v2beta1/runs":
            return 403, {"error": "no permission", "code": 7, "message": "no permission"}
        return FakeKfp()(request)

    with RecordingServer(forbid_runs) as server:
        argv = ["--config", str(TINY_CONFIG), "--spec", str(compiled["kubeflow"]), "--endpoint", server.url]
        assert run_command(kubeflow_submit, argv) == 1
    assert "refused the run: (403)" in capsys.readouterr().err


@pytest.mark.parametrize(("catchup", "no_catchup"), [(False, True), (True, False)])
def test_schedule_creates_a_recurring_run(
    compiled: dict[str, Path], kfp_env: None, catchup: bool, no_catchup: bool
) -> None:
    from visiontfx.tools import kubeflow_schedule

    with RecordingServer(FakeKfp()) as server:
        argv = ["--config", str(TINY_CONFIG), "--spec", str(compiled["kubeflow"]), "--endpoint", server.url]
        argv += ["--cron", "0 3 * * *", "--max-concurrency", "2", *(["--catchup"] if catchup else [])]
        assert run_command(kubeflow_schedule, argv) == 0

    listed = server.only("GET", "/apis/v2beta1/recurringruns")
    assert "experiment_id=exp-1" in listed.query  # looked for a schedule of the same name first
    recurring = server.only("POST", "/apis/v2beta1/recurringruns")
    assert recurring.headers["authorization"] == f"Bearer {TOKEN}"
    body = recurring.body
    assert body["display_name"] == "visiontfx-tiny-schedule"
    assert body["experiment_id"] == "exp-1"
    assert body["trigger"] == {"cron_schedule": {"cron": "0 0 3 * * *"}}  # KFP's cron has seconds first
    assert int(body["max_concurrency"]) == 2
    assert body["no_catchup"] is no_catchup
    assert body["mode"] == "ENABLE"
    assert body["pipeline_spec"] == proto_round_trip(spec_of(compiled["kubeflow"]))
    assert not [r for r in server.requests if r.method == "DELETE"]


def test_schedule_defaults_and_replacing_an_existing_one(
    compiled: dict[str, Path], kfp_env: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from visiontfx.tools import kubeflow_schedule

    # The pod's projected service-account token instead of KFP_TOKEN.
    monkeypatch.delenv("KFP_TOKEN")
    token_file = tmp_path / "token"
    token_file.write_text("projected-sa-token")
    monkeypatch.setenv("KF_PIPELINES_SA_TOKEN_PATH", str(token_file))
    argv = ["--config", str(TINY_CONFIG), "--spec", str(compiled["kubeflow"]), "--cron", "30 2 * * 1-5"]
    argv += ["kubeflow.max_concurrency=3"]

    with RecordingServer(FakeKfp({"rr-old": "nightly"})) as server:
        argv += ["--endpoint", server.url, "--name", "nightly"]
        with pytest.raises(ConfigError, match="--replace"):
            run_command(kubeflow_schedule, argv)
        assert not [
            r for r in server.requests if r.path == "/apis/v2beta1/recurringruns" and r.method == "POST"
        ]
        assert run_command(kubeflow_schedule, [*argv, "--replace"]) == 0

    recurring = server.only("POST", "/apis/v2beta1/recurringruns")
    assert recurring.headers["authorization"] == "Bearer projected-sa-token"
    assert recurring.body["trigger"]["cron_schedule"]["cron"] == "0 30 2 * * 1-5"
    assert int(recurring.body["max_concurrency"]) == 3  # from the config
    assert recurring.body["no_catchup"] is True
    deleted = server.only("DELETE", "/apis/v2beta1/recurringruns/rr-old")
    assert server.requests.index(deleted) > server.requests.index(recurring)  # never without a schedule


def test_kfp_gets_the_bare_spec_even_from_a_vertex_job(compiled: dict[str, Path], tmp_path: Path) -> None:
    from kfp.client.client import _extract_pipeline_yaml

    from visiontfx.tools.kubeflow_submit import prepare_submission

    args = argparse.Namespace(spec=str(compiled["vertex"]), overrides=[], param=[], no_cache=False)
    submission = prepare_submission(args, cluster_config(), str(tmp_path))
    assert submission.spec_path != str(compiled["vertex"])
    doc = _extract_pipeline_yaml(submission.spec_path)
    assert doc.to_dict()["defaultPipelineRoot"] == "gs://bucket-under-test/pipelines"
    assert doc.to_dict() == proto_round_trip(spec_of(compiled["vertex"]))


def test_submit_refuses_what_a_compiled_spec_cannot_honour(compiled: dict[str, Path], tmp_path: Path) -> None:
    from visiontfx.tools.kubeflow_submit import prepare_submission

    def prepare(*, overrides: list[str] = (), param: list[str] = ()) -> Any:  # type: ignore[assignment]
        args = argparse.Namespace(
            spec=str(compiled["kubeflow"]), overrides=list(overrides), param=list(param)
        )
        args.no_cache = False
        return prepare_submission(args, cluster_config(), str(tmp_path))

    with pytest.raises(ConfigError, match="already compiled"):
        prepare(overrides=["training.warmup_epochs=3"])
    with pytest.raises(ConfigError, match="no runtime parameter 'epochs'"):
        prepare(param=["epochs=3"])
    with pytest.raises(ConfigError, match="NAME=VALUE"):
        prepare(param=["data_root"])
    assert prepare(overrides=["kubeflow.experiment=x"], param=["data_root=/mnt/x"]).parameter_values == {
        "data_root": "/mnt/x"
    }


def test_no_endpoint_is_an_error_outside_a_cluster(monkeypatch: pytest.MonkeyPatch) -> None:
    from visiontfx.tools.kubeflow_submit import KfpBackend

    for name in ("KFP_ENDPOINT", "KF_PIPELINES_ENDPOINT", "KUBERNETES_SERVICE_HOST"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ConfigError, match="KFP_ENDPOINT"):
        KfpBackend(cluster_config())
    assert (
        KfpBackend(cluster_config("kubeflow.endpoint=http://kfp.example:8888")).host
        == "http://kfp.example:8888"
    )
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.0.0.1")
    assert KfpBackend(cluster_config()).host is None  # in a pod: the kfp client finds ml-pipeline itself


def test_cron_expressions() -> None:
    from visiontfx.tools.kubeflow_submit import kfp_cron, vertex_cron

    assert kfp_cron("0 3 * * *") == "0 0 3 * * *"
    assert kfp_cron("15 0 3 * * *") == "15 0 3 * * *"  # already KFP's 6-field form
    assert vertex_cron("0 3 * * *") == "0 3 * * *"
    assert vertex_cron("TZ=Europe/Berlin 0 3 * * *") == "TZ=Europe/Berlin 0 3 * * *"
    for bad in ("0 3 * *", "every day"):
        with pytest.raises(ConfigError):
            kfp_cron(bad)
    with pytest.raises(ConfigError, match="UTC"):
        kfp_cron("TZ=Europe/Berlin 0 3 * * *")
    with pytest.raises(ConfigError):
        vertex_cron("0 0 3 * * *")


# --------------------------------------------------------------------------
# Vertex AI (google-cloud-aiplatform over REST, pointed at the loopback server)


class FakeVertex:
    """Minimal answers of the Vertex AI v1 REST API, Cloud Storage's bucket lookup and Vertex ML Metadata."""

    PROJECT, REGION, BUCKET = "project-under-test", "europe-west4", "bucket-under-test"

    def __init__(self) -> None:
        self.contexts: dict[str, Any] = {}  # Vertex ML Metadata contexts (the experiment) by path

    def __call__(self, request: Request) -> tuple[int, Any] | None:
        parent = f"/v1/projects/{self.PROJECT}/locations/{self.REGION}"
        method, path = request.method, request.path
        if path == f"/storage/v1/b/{self.BUCKET}":  # PipelineJob.submit checks the pipeline root's bucket
            return 200, {"name": self.BUCKET, "projectNumber": "123"}
        if path == f"{parent}/pipelineJobs" and method == "POST":
            job_id = request.query.split("pipelineJobId=")[1].split("&")[0]
            return 200, self.job(request.body, f"{parent[4:]}/pipelineJobs/{job_id}")
        if path.startswith(f"{parent}/pipelineJobs/") and method == "GET":
            return 200, self.job({}, path[4:])
        if path == f"{parent}/metadataStores/default" and method == "GET":
            return 200, {"name": f"{parent[4:]}/metadataStores/default"}
        contexts = f"{parent}/metadataStores/default/contexts"
        if path.startswith(f"{contexts}/") and method == "GET":  # the experiment exists once created
            if path in self.contexts:
                return 200, self.contexts[path]
            return 404, {"error": {"code": 404, "message": "not found", "status": "NOT_FOUND"}}
        if path == contexts and method == "POST":
            context_id = request.query.split("contextId=")[1].split("&")[0]
            self.contexts[f"{contexts}/{context_id}"] = {
                **request.body,
                "name": f"{contexts[4:]}/{context_id}",
            }
            return 200, self.contexts[f"{contexts}/{context_id}"]
        if path.startswith(f"{contexts}/") and path.endswith(":addContextChildren"):
            return 200, {}
        if path == f"{parent}/schedules":
            if method == "GET":
                return 200, {}
            return 200, {**request.body, "name": f"{parent[4:]}/schedules/42", "state": "ACTIVE"}
        return None

    def job(self, body: dict[str, Any], name: str) -> dict[str, Any]:
        run_context = f"projects/{self.PROJECT}/locations/{self.REGION}/metadataStores/default/contexts/run-1"
        # The run's context makes the SDK go on to associate the job with the experiment.
        return {
            **body,
            "name": name,
            "state": "PIPELINE_STATE_RUNNING",
            "jobDetail": {"pipelineRunContext": {"name": run_context, "schemaTitle": "system.PipelineRun"}},
        }


@pytest.fixture
def vertex_env(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Iterator[Callable[[RecordingServer], None]]:
    """Anonymous credentials and fresh aiplatform globals; Cloud Storage and Vertex at the loopback server."""
    import google.auth
    from google.auth.credentials import AnonymousCredentials
    from google.cloud.aiplatform import initializer
    from google.cloud.aiplatform.utils import resource_manager_utils

    monkeypatch.setattr(google.auth, "default", lambda *a, **k: (AnonymousCredentials(), FakeVertex.PROJECT))
    # aiplatform.init() writes process-wide state (aiplatform.init is bound to this very object).
    saved = dict(vars(initializer.global_config))
    # The bucket-ownership check asks Cloud Resource Manager for the project number,
    # an API the client offers no endpoint override for.
    monkeypatch.setattr(resource_manager_utils, "get_project_number", lambda *a, **k: "123")

    def point_at(server: RecordingServer) -> None:
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", server.url)

    yield point_at
    vars(initializer.global_config).clear()
    vars(initializer.global_config).update(saved)


def vertex_argv(compiled: dict[str, Path], server: RecordingServer) -> list[str]:
    return [
        "--config",
        str(TINY_CONFIG),
        "--spec",
        str(compiled["vertex"]),
        "--endpoint",
        server.url,
        "kubeflow.platform=vertex",
        f"kubeflow.project={FakeVertex.PROJECT}",
        f"kubeflow.region={FakeVertex.REGION}",
    ]


def test_vertex_submit_creates_a_pipeline_job(
    compiled: dict[str, Path], vertex_env: Callable[[RecordingServer], None]
) -> None:
    from visiontfx.tools import kubeflow_submit

    with RecordingServer(FakeVertex()) as server:
        vertex_env(server)
        argv = [*vertex_argv(compiled, server), "--param", "data_root=/gcs/data/images", "--run-name", "once"]
        assert run_command(kubeflow_submit, argv) == 0

    parent = f"/v1/projects/{FakeVertex.PROJECT}/locations/{FakeVertex.REGION}"
    job = server.only("POST", f"{parent}/pipelineJobs").body
    compiled_job = json.loads(compiled["vertex"].read_text())
    assert job["displayName"] == "once"
    assert job["runtimeConfig"]["gcsOutputDirectory"] == "gs://bucket-under-test/pipelines"
    assert job["runtimeConfig"]["parameterValues"] == {
        **compiled_job["runtimeConfig"]["parameterValues"],
        "data_root": "/gcs/data/images",
    }
    assert job["pipelineSpec"]["root"] == compiled_job["pipelineSpec"]["root"]
    # ... in the config's experiment (Vertex ML Metadata).
    experiment = server.only("POST", f"{parent}/metadataStores/default/contexts")
    assert "contextId=visiontfx&" in experiment.query + "&"  # tiny.yaml's kubeflow.experiment
    assert experiment.body["schemaTitle"] == "system.Experiment"
    children = server.only("POST", f"{parent}/metadataStores/default/contexts/visiontfx:addContextChildren")
    assert children.body["childContexts"] == [f"{parent[4:]}/metadataStores/default/contexts/run-1"]


def test_vertex_schedule_creates_a_pipeline_job_schedule(
    compiled: dict[str, Path], vertex_env: Callable[[RecordingServer], None]
) -> None:
    from visiontfx.tools import kubeflow_schedule

    with RecordingServer(FakeVertex()) as server:
        vertex_env(server)
        argv = [
            *vertex_argv(compiled, server),
            "--cron",
            "TZ=Europe/Amsterdam 0 3 * * *",
            "--max-concurrency",
            "2",
        ]
        assert run_command(kubeflow_schedule, argv) == 0
        with pytest.raises(ConfigError, match="back-fill"):
            run_command(kubeflow_schedule, [*argv, "--catchup"])

    parent = f"/v1/projects/{FakeVertex.PROJECT}/locations/{FakeVertex.REGION}"
    assert "filter=" in server.only("GET", f"{parent}/schedules").query  # looked for the same name first
    schedule = server.only("POST", f"{parent}/schedules").body
    assert schedule["displayName"] == "visiontfx-tiny-schedule"
    assert schedule["cron"] == "TZ=Europe/Amsterdam 0 3 * * *"
    assert int(schedule["maxConcurrentRunCount"]) == 2
    job = schedule["createPipelineJobRequest"]["pipelineJob"]
    assert job["runtimeConfig"]["gcsOutputDirectory"] == "gs://bucket-under-test/pipelines"
    assert job["pipelineSpec"]["root"] == json.loads(compiled["vertex"].read_text())["pipelineSpec"]["root"]


def test_vertex_needs_a_project(monkeypatch: pytest.MonkeyPatch) -> None:
    from visiontfx.tools.kubeflow_submit import VertexBackend, backend_for

    monkeypatch.delenv("GOOGLE_CLOUD_PROJECT", raising=False)
    with pytest.raises(ConfigError, match=r"kubeflow\.project"):
        backend_for(cluster_config("kubeflow.platform=vertex"))
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", "from-env")
    backend = backend_for(cluster_config("kubeflow.platform=vertex"))
    assert isinstance(backend, VertexBackend) and backend.project == "from-env"


def test_shipped_configs_compile(tmp_path: Path) -> None:
    """Every shipped config (the distributed-runner presets included) compiles for its platform."""
    from visiontfx.pipeline.config import CONFIG_DIR
    from visiontfx.pipeline.kubeflow import compile_pipeline, default_target

    for path in sorted(CONFIG_DIR.glob("*.yaml")):
        config = load_config(path)
        target = default_target(config)
        spec = spec_of(Path(compile_pipeline(config, tmp_path / f"{path.stem}.{target}", target)))
        assert spec["pipelineInfo"]["name"] == config.pipeline.name
        if config.pipeline.beam_args:
            args = spec["deploymentSpec"]["executors"]["StatisticsGen_executor"]["container"]["args"]
            assert any(arg.startswith("--runner=") for arg in args), path.name
