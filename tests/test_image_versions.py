"""The pipeline image matches its runtime: the Dockerfile's base and Beam worker boot are the
versions constraints.txt installs, and the image builds from a clean clone where Docker runs."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
DOCKERFILE = REPO / "Dockerfile"
CONSTRAINTS = REPO / "constraints.txt"


def pinned(package: str) -> str:
    for line in CONSTRAINTS.read_text().splitlines():
        match = re.fullmatch(rf"{re.escape(package)}==([^\s;#]+).*", line.strip(), flags=re.IGNORECASE)
        if match:
            return match.group(1)
    raise AssertionError(f"{package} is not pinned in constraints.txt")


def dockerfile_args() -> dict[str, str]:
    """ARG defaults declared before the first FROM (those FROM lines can use)."""
    args = {}
    for line in DOCKERFILE.read_text().splitlines():
        if line.startswith("FROM"):
            break
        match = re.fullmatch(r"ARG (\w+)=(\S+)", line.strip())
        if match:
            args[match.group(1)] = match.group(2)
    return args


def from_images() -> list[str]:
    """Every stage's base image, with ARG defaults substituted."""
    args = dockerfile_args()
    images = []
    for line in DOCKERFILE.read_text().splitlines():
        match = re.match(r"FROM\s+(\S+)", line)
        if match:
            images.append(re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], match.group(1)))
    return images


def test_base_image_is_the_pinned_tfx() -> None:
    tfx_images = [image for image in from_images() if image.startswith("tensorflow/tfx:")]
    assert tfx_images, "no tensorflow/tfx stage"
    assert {image.split(":")[1].split("@")[0] for image in tfx_images} == {pinned("tfx")}
    assert f"tensorflow/tfx:{pinned('tfx')}" in DOCKERFILE.read_text()  # the base.name label


def test_beam_worker_boot_comes_from_the_installed_beam_version() -> None:
    beam = pinned("apache-beam")
    assert dockerfile_args()["BEAM_VERSION"] == beam
    sdk_images = [image for image in from_images() if image.startswith("apache/beam_python")]
    assert sdk_images == [f"apache/beam_python3.10_sdk:{beam}"]  # Python 3.10 like the TFX base
    text = DOCKERFILE.read_text()
    assert "COPY --from=beam_sdk /opt/apache/beam /opt/apache/beam" in text
    # The final stage checks the installed SDK against the boot's version while building.
    assert 'print(apache_beam.__version__)\')" = "${BEAM_VERSION}"' in text


def test_the_installed_beam_is_the_pinned_one() -> None:
    import apache_beam

    assert apache_beam.__version__ == pinned("apache-beam")


def docker_daemon_answers() -> bool:
    if shutil.which("docker") is None:
        return False
    return subprocess.run(["docker", "info"], capture_output=True, timeout=60).returncode == 0


@pytest.mark.integration
def test_image_builds_from_a_clean_clone(tmp_path: Path) -> None:
    if not docker_daemon_answers():
        pytest.skip("no Docker daemon answers `docker info` here: the real image build cannot run")
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "--quiet", str(REPO), str(clone)], check=True)
    result = subprocess.run(
        ["docker", "build", "--tag", "visiontfx-build-test:latest", str(clone)],
        capture_output=True,
        text=True,
        timeout=3600,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    boot = subprocess.run(
        [
            "docker",
            "run",
            "--rm",
            "--entrypoint",
            "python",
            "visiontfx-build-test:latest",
            "-c",
            "import apache_beam, visiontfx.pipeline.kfp_entrypoint; print(apache_beam.__version__)",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert boot.stdout.strip() == pinned("apache-beam"), boot.stderr[-4000:]
