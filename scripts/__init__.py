"""Developer tooling: the local stack (`python -m scripts.stack`) and the demo driver."""
