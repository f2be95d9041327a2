"""Live delivery over WebRTC and HTTP: the only package that imports aiortc or FastAPI."""
