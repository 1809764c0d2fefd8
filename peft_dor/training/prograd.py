"""Old home of ProGrad's gradient projection, kept so code written before the move still imports.

The projection now lives in ProGrad's folder, ``peft_dor.tuners.prograd`` (``ProGradMixin``), and ``DORTrainer``
composes it for a ProGrad model by itself: ``ProGradTrainer`` is another name of ``DORTrainer``. Import from
``peft_dor.tuners.prograd``; this module goes once nothing imports it.
"""

from ..tuners.prograd.training import ProGradMixin, prograd_kl_loss, project_conflicting_gradient
from .trainer import DORTrainer as ProGradTrainer

__all__ = ["ProGradMixin", "ProGradTrainer", "project_conflicting_gradient", "prograd_kl_loss"]
