"""pusher for visiontfx."""
