"""Development tools that do not ship in the worker image (a local RunPod API)."""
