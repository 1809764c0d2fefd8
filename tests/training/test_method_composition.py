"""DORTrainer composes what the active method declares: no per-method trainer class, no per-method switch."""

from __future__ import annotations

import pytest
from peft import get_peft_model
from transformers import CLIPModel

import peft_dor
from peft_dor import DORTrainer
from peft_dor.tuners.prograd import ProGradMixin
from peft_dor.tuners.promptsrc.gpa import GPACallback

from ..helpers import tiny_training_args
from ._toy_data import CLASS_NAMES

DEPTH = {"text_depth": 2, "vision_depth": 2}  # the tiny CLIP has two layers per tower


def _model(tiny_clip_path, config_cls, **kwargs):
    return get_peft_model(CLIPModel.from_pretrained(tiny_clip_path), config_cls(class_names=CLASS_NAMES, **kwargs))


def _gpa(trainer) -> list[GPACallback]:
    return [c for c in trainer.callback_handler.callbacks if isinstance(c, GPACallback)]


def test_dor_trainer_on_a_prograd_model_projects_gradients(tiny_clip_path, tmp_path):
    trainer = DORTrainer(
        model=_model(tiny_clip_path, peft_dor.ProGradConfig, n_ctx=4), args=tiny_training_args(str(tmp_path))
    )
    assert isinstance(trainer, ProGradMixin) and isinstance(trainer, DORTrainer)
    assert type(trainer).__name__ == "ProGradDORTrainer"
    # the old name still imports and is the same composing class
    assert peft_dor.ProGradTrainer is DORTrainer
    coop = DORTrainer(
        model=_model(tiny_clip_path, peft_dor.CoOpConfig, n_ctx=4), args=tiny_training_args(str(tmp_path))
    )
    assert type(coop) is DORTrainer


def test_subclasses_keep_their_own_overrides(tiny_clip_path, tmp_path):
    class Mine(DORTrainer):
        marker = True

    trainer = Mine(
        model=_model(tiny_clip_path, peft_dor.ProGradConfig, n_ctx=4), args=tiny_training_args(str(tmp_path))
    )
    assert isinstance(trainer, Mine) and isinstance(trainer, ProGradMixin) and trainer.marker
    assert type(
        Mine(model=_model(tiny_clip_path, peft_dor.ProGradConfig, n_ctx=4), args=tiny_training_args(str(tmp_path)))
    ) is type(trainer)  # composed once


def test_dor_trainer_on_promptsrc_aggregates_prompts(tiny_clip_path, tmp_path):
    model = _model(tiny_clip_path, peft_dor.PromptSRCConfig, **DEPTH)
    (gpa,) = _gpa(DORTrainer(model=model, args=tiny_training_args(str(tmp_path))))
    assert (gpa.mean, gpa.std) == (15.0, 1.0)
    (gpa,) = _gpa(
        DORTrainer(
            model=model, args=tiny_training_args(str(tmp_path)), method_options={"gpa_mean": 3.0, "gpa_std": 0.5}
        )
    )
    assert (gpa.mean, gpa.std) == (3.0, 0.5)
    # a callback the user passed is not doubled
    mine = GPACallback(mean=2.0, std=1.0)
    assert _gpa(DORTrainer(model=model, args=tiny_training_args(str(tmp_path)), callbacks=[mine])) == [mine]
    assert (
        _gpa(
            DORTrainer(
                model=_model(tiny_clip_path, peft_dor.IVLPConfig, **DEPTH), args=tiny_training_args(str(tmp_path))
            )
        )
        == []
    )


def test_method_options_are_checked(tiny_clip_path, tmp_path):
    promptsrc = _model(tiny_clip_path, peft_dor.PromptSRCConfig, **DEPTH)
    with pytest.raises(ValueError, match=r"gpa_width.*gpa_mean"):
        DORTrainer(model=promptsrc, args=tiny_training_args(str(tmp_path)), method_options={"gpa_width": 1.0})
    with pytest.raises(ValueError, match="CoOp has no training options"):
        DORTrainer(
            model=_model(tiny_clip_path, peft_dor.CoOpConfig),
            args=tiny_training_args(str(tmp_path)),
            method_options={"a": 1},
        )


def test_callbacks_with_saved_state_learn_the_resume_checkpoint(tiny_clip_path, tmp_path, monkeypatch):
    import transformers

    trainer = DORTrainer(
        model=_model(tiny_clip_path, peft_dor.PromptSRCConfig, **DEPTH), args=tiny_training_args(str(tmp_path))
    )
    monkeypatch.setattr(trainer, "resolve_checkpoint", lambda value: "somewhere")  # only the hand-over is under test
    monkeypatch.setattr(transformers.Trainer, "train", lambda self, **kwargs: None)
    trainer.train(resume_from_checkpoint=True)
    assert _gpa(trainer)[0].resume_checkpoint == "somewhere"
