"""peft-dor: CLIP prompt tuning as PEFT adapters, calibrated with Dynamic Outlier Regularization.

``import peft_dor`` registers every method with PEFT, so ``get_peft_model``, ``PeftModel.from_pretrained`` and
``PeftConfig.from_pretrained`` know them. Import it before any of those calls.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from .prompting import PromptClassifierOutput, PromptCLIP, PromptTuner
from .registry import DorPeftType, MethodSpec, method_spec, register, register_method
from .tuners.cocoop import CoCoOpConfig, CoCoOpModel
from .tuners.coop import CoOpConfig, CoOpModel
from .tuners.ivlp import IVLPConfig, IVLPModel
from .tuners.kgcoop import KgCoOpConfig, KgCoOpModel
from .tuners.maple import MaPLeConfig, MaPLeModel
from .tuners.prograd import ProGradConfig, ProGradModel
from .tuners.promptsrc import PromptSRCConfig, PromptSRCModel
from .tuners.tcp import TCPConfig, TCPModel
from .tuners.vpt import VPTConfig, VPTModel

__version__ = "0.1.0.dev0"

register()

# Heavy parts (the Trainer, datasets, evaluate, nltk) load on first use so that `import peft_dor` stays fast.
_LAZY = {
    "DORConfig": "peft_dor.dor",
    "DORRegularizer": "peft_dor.dor",
    "DORTrainer": "peft_dor.training",
    "GPACallback": "peft_dor.tuners.promptsrc.gpa",
    # DORTrainer composes ProGrad's gradient projection for a ProGrad model: the old name is the same class
    "ProGradTrainer": ("peft_dor.training", "DORTrainer"),
    "save_pretrained_atomically": "peft_dor.training.saving",
}

if TYPE_CHECKING:  # pragma: no cover
    from .dor import DORConfig, DORRegularizer
    from .training import DORTrainer
    from .training import DORTrainer as ProGradTrainer
    from .training.saving import save_pretrained_atomically
    from .tuners.promptsrc.gpa import GPACallback


def __getattr__(name: str):
    target = _LAZY.get(name)
    if target is None:
        raise AttributeError(f"module 'peft_dor' has no attribute {name!r}")
    module, attribute = target if isinstance(target, tuple) else (target, name)
    value = getattr(importlib.import_module(module), attribute)
    globals()[name] = value
    return value


__all__ = [
    "CoCoOpConfig",
    "CoCoOpModel",
    "CoOpConfig",
    "CoOpModel",
    "DORConfig",
    "DORRegularizer",
    "DORTrainer",
    "DorPeftType",
    "GPACallback",
    "IVLPConfig",
    "IVLPModel",
    "KgCoOpConfig",
    "KgCoOpModel",
    "MaPLeConfig",
    "MaPLeModel",
    "MethodSpec",
    "ProGradConfig",
    "ProGradModel",
    "ProGradTrainer",
    "PromptCLIP",
    "PromptClassifierOutput",
    "PromptSRCConfig",
    "PromptSRCModel",
    "PromptTuner",
    "TCPConfig",
    "TCPModel",
    "VPTConfig",
    "VPTModel",
    "method_spec",
    "register",
    "register_method",
    "save_pretrained_atomically",
]
