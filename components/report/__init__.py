"""report for visiontfx."""
