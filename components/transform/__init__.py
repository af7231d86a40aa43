"""transform for visiontfx."""
