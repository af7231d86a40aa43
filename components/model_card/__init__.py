"""The model card written beside every pushed version (assets.extra/model_card.md and .html).

A template of ours: the maintained library (model-card-toolkit 2.0.0, the last
release) pins tensorflow-model-analysis < 0.42, absl-py < 1.1 and
jsonschema < 4, none of which fit the TFX 1.16 stack (TFMA 0.47.1).
"""
