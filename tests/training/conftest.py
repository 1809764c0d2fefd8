"""Fixtures of the training tests: a generated colour dataset, its collator and a DORTrainer factory."""

from __future__ import annotations

import pytest

from ..helpers import tiny_training_args
from ._toy_data import CLASS_NAMES, TOY_VOCABULARY, ImageCollator, color_dataset


@pytest.fixture(scope="session")
def toy_dataset():
    """30 images, 6 per class of ``CLASS_NAMES``."""
    return color_dataset(CLASS_NAMES, per_class=6)


@pytest.fixture(scope="session")
def collator(tiny_clip_path):
    return ImageCollator(tiny_clip_path)


@pytest.fixture
def make_trainer(tiny_clip_path, toy_dataset, collator, tmp_path):
    """``make_trainer(dor=..., trainer_cls=..., output_dir=..., **training_args)``: CoOp ("a photo of a" init) on a
    fresh tiny CLIP with a DORTrainer over the toy dataset; DOR defaults to the toy vocabulary with a 40-term pool."""
    from peft import get_peft_model
    from transformers import CLIPModel

    import peft_dor
    from peft_dor import DORConfig, DORTrainer

    def build(dor="default", trainer_cls=DORTrainer, output_dir=None, model=None, trainer_kwargs=None, **overrides):
        if model is None:
            clip = CLIPModel.from_pretrained(tiny_clip_path)
            model = get_peft_model(clip, peft_dor.CoOpConfig(class_names=CLASS_NAMES, ctx_init="a photo of a"))
        if dor == "default":
            dor = DORConfig(vocabulary=TOY_VOCABULARY, pool_size=40, cache_dir=str(tmp_path / "cache"))
        settings = {
            "max_steps": 6,
            "per_device_train_batch_size": 10,
            "per_device_eval_batch_size": 30,
            "learning_rate": 0.05,
            "logging_steps": 1,
        }
        settings.update(overrides)
        args = tiny_training_args(str(output_dir or tmp_path / "run"), **settings)
        kwargs = {"train_dataset": toy_dataset, "eval_dataset": toy_dataset, "data_collator": collator}
        kwargs.update(trainer_kwargs or {})
        return trainer_cls(model=model, args=args, dor=dor, **kwargs)

    return build
