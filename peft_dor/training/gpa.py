"""Old home of PromptSRC's Gaussian prompt aggregation, kept so code written before the move still imports.

The callback now lives in PromptSRC's folder, ``peft_dor.tuners.promptsrc.gpa``, and ``DORTrainer`` adds it for a
PromptSRC model by itself. Import from there (or ``peft_dor.GPACallback``); this module goes once nothing imports it.
"""

from ..tuners.promptsrc.gpa import GPA_STATE_NAME, GPACallback, gpa_weights

__all__ = ["GPA_STATE_NAME", "GPACallback", "gpa_weights"]
