"""components for visiontfx."""
