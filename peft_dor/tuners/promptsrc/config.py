from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from ...prompting import TrainingRecipe, check_number, check_template
from ...registry import DorPeftType
from ..ivlp.config import IVLPConfig

#: the 60 ImageNet templates whose mean frozen text feature is PromptSRC's text target (its
#: ``trainers/imagenet_templates.py``, from OpenAI's prompt-engineering notebook), used for every dataset
PROMPTSRC_TEMPLATES = (
    "a photo of a {}.",
    "a bad photo of a {}.",
    "a photo of many {}.",
    "a sculpture of a {}.",
    "a photo of the hard to see {}.",
    "a low resolution photo of the {}.",
    "a rendering of a {}.",
    "graffiti of a {}.",
    "a bad photo of the {}.",
    "a cropped photo of the {}.",
    "a tattoo of a {}.",
    "the embroidered {}.",
    "a photo of a hard to see {}.",
    "a bright photo of a {}.",
    "a photo of a clean {}.",
    "a photo of a dirty {}.",
    "a dark photo of the {}.",
    "a drawing of a {}.",
    "a photo of my {}.",
    "the plastic {}.",
    "a photo of the cool {}.",
    "a close-up photo of a {}.",
    "a black and white photo of the {}.",
    "a painting of the {}.",
    "a painting of a {}.",
    "a pixelated photo of the {}.",
    "a sculpture of the {}.",
    "a bright photo of the {}.",
    "a cropped photo of a {}.",
    "a plastic {}.",
    "a photo of the dirty {}.",
    "a jpeg corrupted photo of a {}.",
    "a blurry photo of the {}.",
    "a photo of the {}.",
    "a good photo of the {}.",
    "a rendering of the {}.",
    "a {} in a video game.",
    "a photo of one {}.",
    "a doodle of a {}.",
    "a close-up photo of the {}.",
    "the origami {}.",
    "the {} in a video game.",
    "a sketch of a {}.",
    "a doodle of the {}.",
    "a origami {}.",
    "a low resolution photo of a {}.",
    "the toy {}.",
    "a rendition of the {}.",
    "a photo of the clean {}.",
    "a photo of a large {}.",
    "a rendition of a {}.",
    "a photo of a nice {}.",
    "a photo of a weird {}.",
    "a blurry photo of a {}.",
    "a cartoon {}.",
    "art of a {}.",
    "a sketch of the {}.",
    "a embroidered {}.",
    "a pixelated photo of a {}.",
    "itap of the {}.",
)


@dataclass
class PromptSRCConfig(IVLPConfig):
    """Configuration of PromptSRC, self-regulating prompts (Khattak et al., ICCV 2023).

    The prompts are IVLP's (4+4 tokens, depth 9/9, text context from "a photo of a": 46,080 parameters on ViT-B/16).
    Training adds three losses, reported in ``output.losses`` and added by ``DORTrainer``:

    * ``src_text = text_loss_weight * mean|txt - txt_frozen|``, where ``txt_frozen`` is frozen CLIP's mean
      un-normalised feature over ``teacher_templates``, normalised;
    * ``src_image = image_loss_weight * mean|img - img_frozen|`` against the unprompted image encoder;
    * ``src_logits = logits_loss_weight * KL(p_frozen || p_prompted)``, summed and divided by batch x classes.

    Gaussian prompt aggregation over epochs is the Trainer callback :class:`peft_dor.GPACallback`, which
    ``DORTrainer`` adds by itself for a PromptSRC model.

    Example:
        ```python
        import peft_dor
        from peft import get_peft_model
        from transformers import CLIPModel

        clip = CLIPModel.from_pretrained("openai/clip-vit-base-patch16")
        model = get_peft_model(clip, peft_dor.PromptSRCConfig(class_names=["cat", "dog"]))
        ```
    """

    #: GPA with mean 15 and std 1 in the original (for 50 epochs it is unconfirmed)
    training_defaults: ClassVar[dict[str, TrainingRecipe]] = {
        "original": TrainingRecipe("sgd", 0.0025, 4, 20, note="GPACallback(mean=15, std=1)"),
        "dor_lab": TrainingRecipe("sgd", 0.0025, 4, 50),
    }

    text_loss_weight: float = field(default=25.0, metadata={"help": "Weight of the L1 text-feature consistency loss."})
    image_loss_weight: float = field(
        default=10.0, metadata={"help": "Weight of the L1 image-feature consistency loss."}
    )
    logits_loss_weight: float = field(
        default=1.0, metadata={"help": "Weight of the KL divergence from the zero-shot to the prompted logits."}
    )
    teacher_templates: list[str] | None = field(
        default=None,
        metadata={
            "help": "Templates whose mean frozen text feature is the text target; None: PromptSRC's 60 ImageNet "
            "templates (PROMPTSRC_TEMPLATES), for every dataset as in the original."
        },
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("text_loss_weight", "image_loss_weight", "logits_loss_weight"):
            check_number(getattr(self, name), name)
        if self.teacher_templates is not None:
            if isinstance(self.teacher_templates, str) or not self.teacher_templates:
                raise ValueError(
                    "`teacher_templates` must be a non-empty list of templates such as ['a photo of a {}.'], or None."
                )
            self.teacher_templates = [check_template(t, "teacher_templates") for t in self.teacher_templates]

    @classmethod
    def method_peft_type(cls) -> DorPeftType:
        return DorPeftType.PROMPTSRC

    def templates(self) -> tuple[str, ...]:
        """The teacher templates in use."""
        return PROMPTSRC_TEMPLATES if self.teacher_templates is None else tuple(self.teacher_templates)
