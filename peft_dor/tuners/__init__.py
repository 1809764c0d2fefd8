"""One sub-package per prompt method, in PEFT's layout (config.py, model.py, layer.py)."""
