"""Registration of peft-dor's methods with PEFT.

PEFT 0.21's own ``register_peft_method`` only accepts names that already exist in ``peft.PeftType``, and that enum
cannot be extended. We therefore keep our own ``str`` enum, whose members hash and compare equal to their values, and
insert each method into PEFT's three lookup tables. Values are namespaced (``DOR_COOP``) so that a future upstream
``COOP`` can never collide with ours.

Adding a method is one line in ``METHODS``.
"""

from __future__ import annotations

import enum
import importlib

# method key -> (tuners sub-package, config class, tuner class)
METHODS: dict[str, tuple[str, str, str]] = {
    "COOP": ("coop", "CoOpConfig", "CoOpModel"),
    "COCOOP": ("cocoop", "CoCoOpConfig", "CoCoOpModel"),
    "KGCOOP": ("kgcoop", "KgCoOpConfig", "KgCoOpModel"),
    "TCP": ("tcp", "TCPConfig", "TCPModel"),
    "PROGRAD": ("prograd", "ProGradConfig", "ProGradModel"),
    "VPT": ("vpt", "VPTConfig", "VPTModel"),
    "IVLP": ("ivlp", "IVLPConfig", "IVLPModel"),
    "MAPLE": ("maple", "MaPLeConfig", "MaPLeModel"),
    "PROMPTSRC": ("promptsrc", "PromptSRCConfig", "PromptSRCModel"),
}

DorPeftType = enum.Enum("DorPeftType", {key: f"DOR_{key}" for key in METHODS}, type=str)
DorPeftType.__doc__ = "PEFT types of the methods shipped by peft-dor (values are namespaced with ``DOR_``)."


def method_classes(key: str) -> tuple[type, type]:
    """Return ``(config_class, tuner_class)`` of the method registered under ``key`` (e.g. ``"COOP"``)."""
    package, config_name, tuner_name = METHODS[key]
    module = importlib.import_module(f"peft_dor.tuners.{package}")
    return getattr(module, config_name), getattr(module, tuner_name)


def register() -> None:
    """Insert every method into PEFT's mappings. Safe to call any number of times."""
    from peft import mapping

    for key in METHODS:
        peft_type = DorPeftType[key]
        config_cls, tuner_cls = method_classes(key)
        mapping.PEFT_TYPE_TO_CONFIG_MAPPING.setdefault(peft_type, config_cls)
        mapping.PEFT_TYPE_TO_TUNER_MAPPING.setdefault(peft_type, tuner_cls)
        mapping.PEFT_TYPE_TO_PREFIX_MAPPING.setdefault(peft_type, tuner_cls.prefix)
