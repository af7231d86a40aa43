# The visiontfx pipeline image: TFX 1.16 plus this project's wheel. Kubeflow
# Pipelines runs every pipeline component in it (the module functions are
# referenced by name, so no user code is uploaded at compile time), and the
# scheduled-run CronJob runs `visiontfx submit` in it.
#
#   docker build -t ghcr.io/visiontfx/visiontfx:0.1.0 .
#
# Needs BuildKit (the default builder since Docker 23) for RUN --mount.
# The base is pinned by tag; pin it by digest at release time with
#   docker buildx imagetools inspect tensorflow/tfx:1.16.0
# and write FROM tensorflow/tfx:1.16.0@sha256:<digest> in both stages (likewise the
# Beam SDK stage).

# Versions: TFX_VERSION must equal tfx in constraints.txt, BEAM_VERSION apache-beam there
# (tests/test_image_versions.py checks both).
ARG TFX_VERSION=1.16.0
ARG BEAM_VERSION=2.74.0

# --- Beam's SDK worker boot program, of the Beam version the image installs ------
# The TFX base image ships the boot of its own Beam (2.59), while the constraints
# install apache-beam 2.74: a worker whose boot and SDK disagree fails its handshake
# with the runner (Dataflow, Flink). Beam's own SDK image of the installed version
# provides a matching /opt/apache/beam.
FROM apache/beam_python3.10_sdk:${BEAM_VERSION} AS beam_sdk

# --- builder: turn the source tree into a wheel -------------------------------
FROM tensorflow/tfx:${TFX_VERSION} AS builder
WORKDIR /src
# The repository root is the visiontfx package; .dockerignore keeps the
# context to the sources (no .venv, outputs, data, tests, .git).
COPY . .
RUN python -m pip wheel --no-deps --no-cache-dir --wheel-dir /wheels .

# --- runtime: the TFX image plus the wheel ------------------------------------
FROM tensorflow/tfx:${TFX_VERSION}
ARG BEAM_VERSION

LABEL org.opencontainers.image.title="visiontfx" \
      org.opencontainers.image.description="TFX 1.16 image-classification pipeline" \
      org.opencontainers.image.base.name="docker.io/tensorflow/tfx:1.16.0"

# Transform and TFMA in TFX 1.16 need Keras 2 (tf_keras): this must be set
# before anything imports TensorFlow, in every process of the image.
ENV TF_USE_LEGACY_KERAS=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# The wheel and whatever its pinned dependencies need beyond the base image,
# resolved against the project's constraints. Both are bind-mounted (the wheel
# from the builder, constraints.txt from the context): neither stays in a layer.
RUN --mount=type=bind,from=builder,source=/wheels,target=/wheels \
    --mount=type=bind,source=constraints.txt,target=/tmp/constraints.txt \
    python -m pip install --no-cache-dir -c /tmp/constraints.txt /wheels/visiontfx-*.whl \
    && test "$(python -c 'import apache_beam; print(apache_beam.__version__)')" = "${BEAM_VERSION}"

# The worker boot (the image's entrypoint) of the installed Beam version.
COPY --from=beam_sdk /opt/apache/beam /opt/apache/beam

# A numeric non-root user, so Kubernetes' runAsNonRoot can verify it; the same
# uid (10001) as the manifests' securityContext.
# The compiled Kubeflow spec points ImportSchemaGen at this fixed path (see pipeline/kubeflow.py).
COPY schemas/ /opt/visiontfx/schemas/
RUN groupadd --gid 10001 visiontfx \
    && useradd --no-log-init --uid 10001 --gid 10001 --create-home --home-dir /home/visiontfx visiontfx
USER 10001:10001
WORKDIR /home/visiontfx

# Kubeflow Pipelines and the CronJob set the command for each container; the
# base image's entrypoint (Beam's worker boot) stays, so this image also
# works as a Dataflow worker image.
#
# No HEALTHCHECK: every container of this image is a run-to-completion task,
# and Kubernetes ignores Docker health checks anyway.
# checkov:skip=CKV_DOCKER_2:Batch image - containers run to completion and Kubernetes ignores HEALTHCHECK
