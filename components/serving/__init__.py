"""serving for visiontfx."""
