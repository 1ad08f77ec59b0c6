"""Example jobs bundled with fss; `fss dev` and compose.yaml run them."""
