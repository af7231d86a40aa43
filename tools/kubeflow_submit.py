"""``visiontfx submit``: run the compiled pipeline once on Kubeflow Pipelines 2.x or Vertex AI.

This module is also where ``visiontfx schedule`` gets everything it shares with
``submit``: which spec to send and with which runtime parameter values, and the
two platform clients (:class:`KfpBackend`, :class:`VertexBackend`).

``kubeflow.platform`` picks the platform. Credentials come from the
environment only, never from the config file in the repository:

- Kubeflow Pipelines (the ``kfp`` 2.x client, REST API v2beta1): the endpoint
  is ``--endpoint``, else ``KFP_ENDPOINT`` / ``KF_PIPELINES_ENDPOINT``, else
  ``kubeflow.endpoint`` (a URL is not a secret), else — inside a pod — the
  in-cluster address. The token is ``KFP_TOKEN`` (a bearer token), else the
  projected service-account token file at ``KF_PIPELINES_SA_TOKEN_PATH`` (what
  the scheduled CronJob's pod mounts), else whatever the kfp client finds itself
  (its ``KF_PIPELINES_IAP_OAUTH2_CLIENT_ID`` variables for IAP).
- Vertex AI: Application Default Credentials — ``GOOGLE_APPLICATION_CREDENTIALS``,
  workload identity or ``gcloud auth application-default login``.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import re
import sys
import tempfile
import warnings
from typing import Any, Mapping, Protocol, Sequence

from visiontfx.pipeline.compiled_spec import (
    load_document,
    parse_parameter_value,
    pipeline_spec_of,
    spec_parameters,
)
from visiontfx.pipeline.config import Config, ConfigError, load_config
from visiontfx.pipeline.kubeflow import PARAMETER_SHORTHANDS, apply_shorthands, compile_pipeline, render

ENDPOINT_ENV_VARS = ("KFP_ENDPOINT", "KF_PIPELINES_ENDPOINT")
TOKEN_ENV_VAR = "KFP_TOKEN"
SA_TOKEN_PATH_ENV_VAR = "KF_PIPELINES_SA_TOKEN_PATH"
PROJECT_ENV_VAR = "GOOGLE_CLOUD_PROJECT"
# With --spec, only these overrides still mean something: everything else was
# compiled into the file (use --param for its runtime parameters).
SUBMIT_SETTINGS = frozenset(
    f"kubeflow.{key}"
    for key in ("platform", "endpoint", "project", "region", "experiment", "max_concurrency")
)
_TZ_PREFIX = re.compile(r"^(?:CRON_)?TZ=\S+\s+")


@dataclasses.dataclass(frozen=True)
class Submission:
    """One compiled pipeline, ready to send, with its runtime parameter values."""

    spec_path: str  # in the platform's format: PipelineSpec YAML (KFP) or PipelineJob JSON (Vertex)
    pipeline_name: str
    parameter_values: dict[str, Any]
    enable_caching: bool | None  # None: as compiled (pipeline.enable_cache)


@dataclasses.dataclass(frozen=True)
class Schedule:
    """When and how a recurring run fires."""

    name: str
    cron: str  # as given: 5 standard fields (UTC); kfp_cron / vertex_cron convert and check it
    max_concurrency: int
    catchup: bool = False


class Backend(Protocol):
    """A platform that runs compiled pipelines."""

    def describe(self) -> str: ...

    def submit(self, submission: Submission, run_name: str) -> str: ...

    def schedule(self, submission: Submission, schedule: Schedule, replace: bool = False) -> str: ...


# --------------------------------------------------------------------------
# Command-line pieces both commands use


def add_submission_arguments(parser: argparse.ArgumentParser) -> None:
    from visiontfx.pipeline.config import add_config_arguments

    add_config_arguments(parser)
    parser.add_argument(
        "--spec",
        help="compiled pipeline from `visiontfx compile` (default: compile the config now, "
        "so config overrides like training.finetune_epochs=5 take effect)",
    )
    parser.add_argument(
        "--endpoint",
        help="KFP API URL (default: $KFP_ENDPOINT, $KF_PIPELINES_ENDPOINT, kubeflow.endpoint), "
        "or a Vertex AI API endpoint override",
    )
    parser.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="runtime parameter value, repeatable (e.g. data_root=/mnt/data/images); shorthands set a field "
        f"inside the JSON parameters: {', '.join(PARAMETER_SHORTHANDS)}",
    )
    parser.add_argument(
        "--no-cache", action="store_true", help="run every task, even those with cached results"
    )


def prepare_submission(args: argparse.Namespace, config: Config, workdir: str) -> Submission:
    """The spec to send (``--spec``, or compiled now into ``workdir``) and its parameter values."""
    platform = config.kubeflow.platform
    if args.spec:
        compiled_in = [o for o in args.overrides if o.split("=", 1)[0].strip() not in SUBMIT_SETTINGS]
        if compiled_in:
            raise ConfigError(
                f"{', '.join(compiled_in)}: already compiled into {args.spec}. Drop --spec to compile with "
                "these overrides, or use --param for a runtime parameter."
            )
        document = load_document(args.spec)
        spec = pipeline_spec_of(document)
        spec_path = args.spec
        if platform == "kubeflow" and (
            "pipelineSpec" in document or not spec_path.endswith((".yaml", ".yml"))
        ):
            # The kfp client takes only a bare spec, and only from a .yaml/.yml file.
            spec_path = os.path.join(workdir, "pipeline.yaml")
            with open(spec_path, "w") as handle:
                handle.write(render({"pipelineSpec": spec}, "kubeflow"))
    else:
        suffix = ".json" if platform == "vertex" else ".yaml"
        spec_path = compile_pipeline(config, os.path.join(workdir, f"pipeline{suffix}"), platform)
        spec = pipeline_spec_of(load_document(spec_path))
    return Submission(
        spec_path=spec_path,
        pipeline_name=spec["pipelineInfo"]["name"],
        parameter_values=parse_parameters(args.param, spec),
        enable_caching=False if args.no_cache else None,
    )


def parse_parameters(items: Sequence[str], spec: Mapping[str, Any]) -> dict[str, Any]:
    """``NAME=VALUE`` strings checked against the spec's runtime parameters and typed like them.

    A shorthand (``warmup_epochs``, ``min_accuracy`` …) sets its field inside
    the JSON parameter it belongs to.
    """
    declared = spec_parameters(spec)
    values: dict[str, Any] = {}
    shorthands: dict[str, str] = {}
    for item in items:
        name, separator, raw = item.partition("=")
        name = name.strip()
        if not separator:
            raise ConfigError(f"--param {item!r} must look like NAME=VALUE.")
        if name in PARAMETER_SHORTHANDS:
            shorthands[name] = raw.strip()
        elif name in declared:
            values[name] = parse_parameter_value(name, raw, declared[name]["type"])
        else:
            known = ", ".join([*declared, *PARAMETER_SHORTHANDS]) or "none"
            raise ConfigError(f"The pipeline has no runtime parameter {name!r}; it has: {known}.")
    return apply_shorthands(values, shorthands, declared)


def default_run_name(pipeline_name: str) -> str:
    return f"{pipeline_name}-{datetime.datetime.now(datetime.timezone.utc):%Y%m%d-%H%M%S}"


# --------------------------------------------------------------------------
# Cron: KFP's scheduler (robfig/cron v1) reads six fields, seconds first, so a
# standard "0 3 * * *" would mean minute 3 of every hour there. Vertex AI takes
# the standard five (optionally prefixed with TZ=…).


def kfp_cron(expression: str) -> str:
    """A standard 5-field cron (or KFP's own 6-field form) as KFP's 6-field cron."""
    if _TZ_PREFIX.match(expression):
        raise ConfigError("Kubeflow Pipelines schedules run in UTC; drop the TZ= prefix.")
    fields = expression.split()
    if len(fields) == 5:
        return " ".join(["0", *fields])
    if len(fields) == 6:
        return " ".join(fields)
    raise ConfigError(f"--cron {expression!r}: expected 5 fields (minute hour day month weekday).")


def vertex_cron(expression: str) -> str:
    """A standard 5-field cron, optionally with a ``TZ=Area/City`` prefix, for Vertex AI."""
    prefix = _TZ_PREFIX.match(expression)
    fields = expression[prefix.end() if prefix else 0 :].split()
    if len(fields) != 5:
        raise ConfigError(
            f"--cron {expression!r}: Vertex AI expects 5 fields (minute hour day month weekday)."
        )
    return (prefix.group(0) if prefix else "") + " ".join(fields)


# --------------------------------------------------------------------------
# Kubeflow Pipelines


def kfp_endpoint(config: Config, endpoint: str | None) -> str | None:
    """The KFP API URL; None inside a pod, where the kfp client finds the in-cluster service."""
    for candidate in (
        endpoint,
        *(os.environ.get(name) for name in ENDPOINT_ENV_VARS),
        config.kubeflow.endpoint,
    ):
        if candidate:
            return candidate
    if os.environ.get("KUBERNETES_SERVICE_HOST"):
        return None
    raise ConfigError(
        "No Kubeflow Pipelines endpoint: pass --endpoint, set KFP_ENDPOINT, or set kubeflow.endpoint."
    )


class KfpBackend:
    """Kubeflow Pipelines 2.x through the real ``kfp`` client."""

    def __init__(self, config: Config, endpoint: str | None = None) -> None:
        self.host = kfp_endpoint(config, endpoint)
        self.experiment = config.kubeflow.experiment or "Default"

    def describe(self) -> str:
        return (
            f"Kubeflow Pipelines at {self.host or 'the in-cluster endpoint'}, experiment {self.experiment!r}"
        )

    def client(self) -> Any:
        import kfp

        token = os.environ.get(TOKEN_ENV_VAR) or None
        credentials = None
        token_path = os.environ.get(SA_TOKEN_PATH_ENV_VAR)
        if not token and token_path:
            from kfp.client.set_volume_credentials import ServiceAccountTokenVolumeCredentials

            credentials = ServiceAccountTokenVolumeCredentials(path=token_path)  # re-read on refresh
        with warnings.catch_warnings():
            # "This client only works with Kubeflow Pipeline v2.0.0-beta.2 and later": we target 2.x.
            warnings.simplefilter("ignore", FutureWarning)
            return kfp.Client(host=self.host, existing_token=token, credentials=credentials)

    def submit(self, submission: Submission, run_name: str) -> str:
        result = self.client().create_run_from_pipeline_package(
            submission.spec_path,
            arguments=submission.parameter_values,
            run_name=run_name,
            experiment_name=self.experiment,
            enable_caching=submission.enable_caching,
        )
        return str(result.run_id)

    def schedule(self, submission: Submission, schedule: Schedule, replace: bool = False) -> str:
        client = self.client()
        experiment_id = client.create_experiment(self.experiment).experiment_id  # gets it if it exists
        existing = self._recurring_runs_named(client, experiment_id, schedule.name)
        if existing and not replace:
            raise ConfigError(
                f"A recurring run named {schedule.name!r} exists ({', '.join(existing)}); "
                "pass --replace to replace it, or --name for another one."
            )
        created = client.create_recurring_run(
            experiment_id=experiment_id,
            job_name=schedule.name,
            cron_expression=kfp_cron(schedule.cron),
            max_concurrency=schedule.max_concurrency,
            no_catchup=not schedule.catchup,
            params=submission.parameter_values,
            pipeline_package_path=submission.spec_path,
            enable_caching=submission.enable_caching,
        )
        # Created first, then the old one deleted: a failure never leaves no schedule.
        for recurring_run_id in existing:
            client.delete_recurring_run(recurring_run_id)
        return str(created.recurring_run_id)

    @staticmethod
    def _recurring_runs_named(client: Any, experiment_id: str, name: str) -> list[str]:
        response = client.list_recurring_runs(
            experiment_id=experiment_id,
            page_size=100,
            filter=json.dumps(
                {"predicates": [{"operation": "EQUALS", "key": "display_name", "stringValue": name}]}
            ),
        )
        return [run.recurring_run_id for run in (response.recurring_runs or []) if run.display_name == name]


# --------------------------------------------------------------------------
# Vertex AI Pipelines


class VertexBackend:
    """Vertex AI Pipelines through ``google-cloud-aiplatform`` (PipelineJob, PipelineJobSchedule)."""

    def __init__(self, config: Config, endpoint: str | None = None) -> None:
        self.project = config.kubeflow.project or os.environ.get(PROJECT_ENV_VAR, "")
        if not self.project:
            raise ConfigError(f"Vertex AI needs a project: set kubeflow.project or {PROJECT_ENV_VAR}.")
        self.region = config.kubeflow.region
        self.endpoint = endpoint
        self.experiment = config.kubeflow.experiment

    def describe(self) -> str:
        return f"Vertex AI Pipelines in {self.project}/{self.region}"

    def _aiplatform(self) -> Any:
        from google.cloud import aiplatform

        options: dict[str, Any] = {"project": self.project, "location": self.region}
        if self.endpoint:
            options["api_endpoint"] = self.endpoint
            if "://" in self.endpoint:  # a URL (a proxy, a test server) is only reachable over REST
                options["api_transport"] = "rest"
        aiplatform.init(**options)
        return aiplatform

    def _job(self, submission: Submission, display_name: str) -> Any:
        return self._aiplatform().PipelineJob(
            display_name=display_name,
            template_path=submission.spec_path,
            parameter_values=submission.parameter_values,
            enable_caching=submission.enable_caching,
        )

    def submit(self, submission: Submission, run_name: str) -> str:
        job = self._job(submission, run_name)
        job.submit(experiment=self.experiment or None)
        return str(job.resource_name)

    def schedule(self, submission: Submission, schedule: Schedule, replace: bool = False) -> str:
        if schedule.catchup:
            raise ConfigError(
                "Vertex AI schedules cannot back-fill when created (only when a paused schedule resumes)."
            )
        aiplatform = self._aiplatform()
        existing = [
            found
            for found in aiplatform.PipelineJobSchedule.list(filter=f'display_name="{schedule.name}"')
            if found.display_name == schedule.name
        ]
        if existing and not replace:
            names = ", ".join(found.resource_name for found in existing)
            raise ConfigError(
                f"A schedule named {schedule.name!r} exists ({names}); "
                "pass --replace to replace it, or --name for another one."
            )
        job = self._job(submission, submission.pipeline_name)
        created = job.create_schedule(
            cron=vertex_cron(schedule.cron),
            display_name=schedule.name,
            max_concurrent_run_count=schedule.max_concurrency,
        )
        for found in existing:
            found.delete()
        return str(created.resource_name)


def api_errors() -> tuple[type[BaseException], ...]:
    """The platform clients' API errors (imported only once one is being handled)."""
    from google.api_core.exceptions import GoogleAPIError
    from kfp_server_api.exceptions import ApiException

    return (ApiException, GoogleAPIError)


def backend_for(config: Config, endpoint: str | None = None) -> Backend:
    """The platform client ``kubeflow.platform`` names (credentials are checked before any compile)."""
    if config.kubeflow.platform == "vertex":
        return VertexBackend(config, endpoint)
    return KfpBackend(config, endpoint)


# --------------------------------------------------------------------------
# visiontfx submit


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_submission_arguments(parser)
    parser.add_argument("--run-name", help="display name of the run (default: <pipeline>-<UTC time>)")


def main(args: argparse.Namespace) -> int:
    config = load_config(args.config, args.overrides)
    backend = backend_for(config, args.endpoint)
    with tempfile.TemporaryDirectory(prefix="visiontfx-submit-") as workdir:
        submission = prepare_submission(args, config, workdir)
        try:
            run = backend.submit(submission, args.run_name or default_run_name(submission.pipeline_name))
        except api_errors() as error:  # evaluated only when something is raised
            print(f"visiontfx: {backend.describe()} refused the run: {error}", file=sys.stderr)
            return 1
    print(f"Submitted '{submission.pipeline_name}' to {backend.describe()}: {run}")
    return 0
