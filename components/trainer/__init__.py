"""trainer for visiontfx."""
