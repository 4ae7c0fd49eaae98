"""Pictures of a build: OpenCV overlays on frames and matplotlib figures (through the ``Figure`` API)."""
