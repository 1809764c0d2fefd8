"""One sub-package per prompt method, in PEFT's layout (config.py, layer.py, model.py), plus whatever else the method
owns (its losses, training hooks, callbacks). Each sub-package registers itself with ``peft_dor.registry`` on import.

This tuple is the one list of methods in the package: adding a method is a new folder here and one entry below.
"""

#: the method folders, in registration order; ``DorPeftType`` has one member per entry (``"coop"`` -> ``DOR_COOP``)
METHOD_PACKAGES = ("coop", "cocoop", "kgcoop", "tcp", "prograd", "vpt", "ivlp", "maple", "promptsrc")
