"""The check stage: every section of params.yaml validated before any stage with outputs runs."""
