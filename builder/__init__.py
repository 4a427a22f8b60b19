"""Image-build-time tooling: fetch, convert, quantize, publish, bake, right-size."""
