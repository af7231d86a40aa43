"""The Pusher's typed settings from the run's config (its ``custom_config``).

:class:`PushTargets` holds the defaults and checks of the ``serving`` keys the
Pusher uses; ``pipeline/config.py``'s ServingConfig extends it with what only
the tools read (the serving directory, top-k). The executor's PushSettings
takes its defaults from here. No TensorFlow import.
"""

from __future__ import annotations

import dataclasses
import functools

from visiontfx.contracts.settings import Settings, key_path, require


@dataclasses.dataclass(frozen=True)
class PushTargets(Settings):
    """Which model a push serves, how many versions stay, how many warm-up requests it records."""

    model_name: str = "visiontfx"
    keep_versions: int = 3  # newest versions kept on disk (labelled ones are never removed)
    warmup_requests: int = 8  # recorded into assets.extra/tf_serving_warmup_requests

    def validate(self, prefix: str = "") -> None:
        key = functools.partial(key_path, prefix)
        require(self.keep_versions >= 1, f"'{key('keep_versions')}' must be at least 1.")
        require(self.warmup_requests >= 0, f"'{key('warmup_requests')}' must be >= 0.")
        require(
            bool(self.model_name) and "/" not in self.model_name,
            f"'{key('model_name')}' must be a non-empty name without '/'.",
        )
