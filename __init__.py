"""visiontfx: a production image-classification pipeline built the TFX way.

This repository's root is the ``visiontfx`` package (see setup.py), so
``visiontfx.pipeline`` is ``pipeline/`` and ``visiontfx.components`` is
``components/``.
"""

import os
import warnings

# Transform and TFMA in TFX 1.16 need Keras 2 (tf_keras). This must be set
# before anything imports TensorFlow, and every entry point imports this
# package first.
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
# TensorFlow's C++ INFO lines drown the progress output people want to read.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# Google client libraries warn on every import that Python 3.10 support ends;
# TFX 1.16 pins us to 3.10, so the warning says nothing actionable.
warnings.filterwarnings("ignore", message="You are using a non-supported Python version")
warnings.filterwarnings("ignore", message="Support for google-cloud-storage < 3.0.0")

__version__ = "0.1.0"


def __getattr__(name: str) -> type:
    """``visiontfx.EdgeModel``, loaded on first use.

    TFX's Kubeflow V2 runtime imports a custom artifact class by its type name,
    which must have the form ``<namespace>.<Class>`` (its schema-title rule): the
    EdgeExport component's artifact type is therefore reachable here too.
    """
    if name == "EdgeModel":
        from visiontfx.components.edge_export.component import EdgeModel

        return EdgeModel
    raise AttributeError(f"module 'visiontfx' has no attribute {name!r}")
