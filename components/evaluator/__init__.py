"""evaluator for visiontfx."""
