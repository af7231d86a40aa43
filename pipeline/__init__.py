"""pipeline for visiontfx."""
