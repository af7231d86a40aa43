"""The TensorFlow Datasets source reads prepared data from a local data_dir (no download)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds
from tfx.types import standard_artifacts

from visiontfx.components.image_example_gen import sources
from visiontfx.components.image_example_gen.executor import REPORT_FILE, Executor
from visiontfx.pipeline.config import from_dict
from visiontfx.pipeline.dag import ingest_settings


class TinyShapes(tfds.core.GeneratorBasedBuilder):
    """A 3-class image dataset generated locally, standing in for a prepared TFDS dataset."""

    VERSION = tfds.core.Version("1.0.0")

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self,
            features=tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Image(shape=(16, 16, 3)),
                    "label": tfds.features.ClassLabel(names=["dark", "mid", "light"]),
                }
            ),
        )

    def _split_generators(self, dl_manager: Any) -> dict[str, Iterator]:
        return {"train": self._generate_examples(60, 0), "test": self._generate_examples(15, 1000)}

    def _generate_examples(self, count: int, offset: int) -> Iterator[tuple[int, dict[str, Any]]]:
        for i in range(count):
            label = i % 3
            yield offset + i, {"image": np.full((16, 16, 3), 40 + 80 * label, np.uint8), "label": label}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("tfds")
    TinyShapes(data_dir=str(root)).download_and_prepare()
    return root


def test_lists_classes_and_keeps_the_test_split(data_dir: Path) -> None:
    classes, entries = sources.list_tfds("tiny_shapes", str(data_dir))
    assert classes == ["dark", "mid", "light"]
    assert sum(e.source_split == "test" for e in entries) == 15
    assert len(entries) == 75


def test_unprepared_dataset_fails_without_downloading(tmp_path: Path) -> None:
    with pytest.raises(sources.SourceError, match="not prepared"):
        sources.list_tfds("tiny_shapes", str(tmp_path))


def test_executor_reads_tfds_images(tmp_path: Path, data_dir: Path) -> None:
    config = from_dict({"data": {"source": "tfds", "tfds_name": "tiny_shapes", "path": str(data_dir)}})
    examples = standard_artifacts.Examples()
    examples.uri = str(tmp_path / "examples")
    Executor().Do(
        {},
        {"examples": [examples]},
        {
            "source": "tfds",
            "input_base": str(data_dir),
            "options": ingest_settings(config).to_json(),
        },
    )
    report = json.loads((Path(examples.uri) / REPORT_FILE).read_text())
    assert report["ingested"] == 75 and report["splits"]["test"]["total"] == 15
    files = tf.io.gfile.glob(f"{examples.uri}/Split-test/*.gz")
    for record in tf.data.TFRecordDataset(files, "GZIP"):
        feature = tf.train.Example.FromString(record.numpy()).features.feature
        pixels = tf.io.decode_png(feature["image/encoded"].bytes_list.value[0]).numpy()
        assert pixels.shape == (16, 16, 3)
        assert pixels[0, 0, 0] == 40 + 80 * feature["label"].int64_list.value[0]
