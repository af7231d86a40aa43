"""image example gen for visiontfx."""
