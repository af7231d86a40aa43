"""Tools on top of the pipeline: serving, prediction and other commands (never imported by components)."""
