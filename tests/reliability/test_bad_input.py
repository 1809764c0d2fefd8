"""Bad input at every public entry point: each mistake raises ``ValueError`` / ``TypeError`` naming the argument and
the fix, before any expensive work (vocabulary encoding, training) starts.

Entry points: every method's config, ``get_peft_model``, ``set_class_names``, the model's forward, ``DORConfig``, the
outlier pool, ``DORTrainer``'s arguments and ``train(resume_from_checkpoint=...)``. (Loading an adapter saved by a
method whose package was not imported is ``tests/test_registry.py``'s; adapters that do not fit are
``test_safe_loading.py``'s.)
"""

from __future__ import annotations

import os

import pytest
import torch
from transformers import CLIPModel

from peft_dor import DORConfig, DORRegularizer, DORTrainer
from peft_dor.dor import vocabulary as vocabulary_module

from ._cases import CLASS_NAMES, METHOD_CASES, VOCABULARY, method_config, outlier_images, training_args

LONG_NAME = " ".join(["cat"] * 70)  # 70 tokens: fits CoOp's 4-slot prompt (76), not a longer template


@pytest.mark.parametrize("key", list(METHOD_CASES))
@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"class_names": None}, ValueError, "`class_names` must be a non-empty list"),
        ({"class_names": []}, ValueError, "`class_names` must be a non-empty list"),
        ({"class_names": "cat"}, ValueError, "`class_names` must be a non-empty list"),
        ({"class_names": ["cat", "Cat "]}, ValueError, "`class_names` holds duplicates: 'cat' and 'Cat '"),
        ({"class_names": ["cat", "  "]}, ValueError, "`class_names` must hold non-empty strings"),
        ({"class_names": ["cat", 3]}, ValueError, "`class_names` must hold non-empty strings; got 3"),
        ({"template": "a photo of a cat."}, ValueError, "`template` must contain exactly one '{}'"),
        ({"template": "{} and {}"}, ValueError, "`template` must contain exactly one '{}'"),
        ({"template": "a photo of a {name}."}, ValueError, "`template` must contain exactly one '{}'"),
        ({"template": "a photo of a {}. }"}, ValueError, "Other braces must be doubled"),
        ({"tokenizer_name_or_path": 5}, TypeError, "`tokenizer_name_or_path` must be a string"),
        ({"base_model_dims": [32, 2]}, TypeError, "`base_model_dims` must be a dict"),
    ],
)
def test_every_method_config_rejects_common_mistakes(key, kwargs, error, message):
    kwargs = dict(kwargs)
    names = kwargs.pop("class_names", CLASS_NAMES)
    with pytest.raises(error, match=message.replace("(", r"\(").replace("{", r"\{").replace("}", r"\}")):
        method_config(key, class_names=names, **kwargs)


@pytest.mark.parametrize(
    ("key", "kwargs", "error", "message"),
    [
        ("coop", {"n_ctx": 0}, ValueError, "`n_ctx` must be a positive integer"),
        ("coop", {"n_ctx": True}, ValueError, "`n_ctx` must be a positive integer"),
        ("coop", {"ctx_std": float("inf")}, ValueError, "`ctx_std` must be a finite number > 0"),
        ("coop", {"ctx_std": 0.0}, ValueError, "`ctx_std` must be a finite number > 0"),
        ("coop", {"class_token_position": "start"}, ValueError, "`class_token_position` must be one of"),
        ("coop", {"ctx_init": 4}, TypeError, "`ctx_init` must be a phrase"),
        ("coop", {"ctx_init": "a photo of a {}"}, ValueError, "`ctx_init` is the phrase .* not a template"),
        ("cocoop", {"meta_net_hidden_dim": 0}, ValueError, "`meta_net_hidden_dim` must be a positive integer"),
        ("kgcoop", {"kg_weight": -1.0}, ValueError, "`kg_weight` must be a finite number >= 0"),
        ("kgcoop", {"kg_weight": float("nan")}, ValueError, "`kg_weight` must be a finite number >= 0"),
        ("tcp", {"class_token_layer": 0}, ValueError, "`class_token_layer` must be an integer >= 1"),
        ("tcp", {"knowledge_weight": float("inf")}, ValueError, "`knowledge_weight` must be a finite number"),
        ("tcp", {"prompt_template": "X X {x}"}, ValueError, "`prompt_template` must contain exactly one"),
        ("prograd", {"prograd_lambda": -0.5}, ValueError, "`prograd_lambda` must be a finite number >= 0"),
        ("prograd", {"kl_temperature": 0.0}, ValueError, "`kl_temperature` must be a finite number > 0"),
        ("prograd", {"ctx_init": "a {} photo"}, ValueError, "`ctx_init` may be a template only when"),
        ("vpt", {"vision_tokens": 0}, ValueError, "`vision_tokens` must be an integer >= 1"),
        ("vpt", {"deep": True, "depth": 1}, ValueError, "`deep`=True contradicts `depth`=1"),
        ("vpt", {"ctx_std": float("nan")}, ValueError, "`ctx_std` must be a finite number > 0"),
        ("ivlp", {"text_depth": 0}, ValueError, "`text_depth` must be an integer >= 1"),
        ("ivlp", {"vision_tokens": -1}, ValueError, "`vision_tokens` must be an integer >= 0"),
        ("maple", {"depth": True}, ValueError, "`depth` must be an integer >= 1"),
        ("promptsrc", {"image_loss_weight": float("inf")}, ValueError, "`image_loss_weight` must be a finite"),
        ("promptsrc", {"teacher_templates": ["a photo"]}, ValueError, "`teacher_templates` must contain exactly"),
        ("promptsrc", {"teacher_templates": []}, ValueError, "`teacher_templates` must be a non-empty list"),
    ],
)
def test_method_specific_fields_are_validated(key, kwargs, error, message):
    with pytest.raises(error, match=message):
        method_config(key, **kwargs)


@pytest.mark.parametrize(
    ("key", "names", "kwargs", "message"),
    [
        ("coop", ["dog", " ".join(["cat"] * 80)], {}, "is 87 tokens long but the text tower takes at most 77"),
        # the learned prompt fits, the zero-shot template (KgCoOp's target, DOR's scoring) does not
        ("kgcoop", ["dog", LONG_NAME], {"template": "a photo of a {}, a type of pet."}, "at most 77"),
        (
            "coop",
            ["caf\u00e9", "cafe\u0301"],
            {},
            "duplicates: 'caf\u00e9' and 'cafe\u0301'",
        ),  # NFC: one token sequence
        ("maple", CLASS_NAMES, {"depth": 5}, "`depth`=5 but the text tower has only 2 layers"),
        ("tcp", CLASS_NAMES, {"class_token_layer": 2}, "`class_token_layer`=2 but the text tower has only 2 layers"),
        ("coop", CLASS_NAMES, {"ctx_init": "a photo", "n_ctx": 5}, "n_ctx=5 but ctx_init='a photo' has only 2"),
    ],
)
def test_get_peft_model_fails_before_building_anything(tiny_clip_path, key, names, kwargs, message):
    from peft import get_peft_model

    with pytest.raises(ValueError, match=message):
        get_peft_model(CLIPModel.from_pretrained(tiny_clip_path), method_config(key, class_names=names, **kwargs))


@pytest.mark.parametrize(
    ("names", "message"),
    [
        ([], "`class_names` must be a non-empty list"),
        ("bird", "`class_names` must be a non-empty list"),
        (["lamp", "LAMP"], "duplicates"),
        (["lamp", "cafe\u0301", "café"], "duplicates"),
        (["lamp", LONG_NAME], "at most 77"),  # KgCoOp's template is longer than its prompt
    ],
)
def test_set_class_names_rejects_bad_names_and_keeps_the_old_ones(make_model, names, message):
    model = make_model("kgcoop", template="a photo of a {}, a type of pet.")
    with pytest.raises(ValueError, match=message):
        model.set_class_names(names)
    assert model.get_base_model().class_names == CLASS_NAMES


def test_forward_rejects_bad_labels(make_model, pixel_values):
    model = make_model("coop")
    with pytest.raises(ValueError, match=r"`labels` must lie in \[0, 5\).*got values in \[0, 7\]"):
        model(pixel_values=pixel_values, labels=torch.tensor([0, 1, 7, 2]))
    with pytest.raises(TypeError, match="`labels` must hold integer class indices.*labels.long()"):
        model(pixel_values=pixel_values, labels=torch.tensor([0.0, 1.0, 2.0, 3.0]))
    with pytest.raises(ValueError, match=r"one class index per image, shape \(4,\); got shape \(4, 5\)"):
        model(pixel_values=pixel_values, labels=torch.zeros(4, 5, dtype=torch.long))
    # integer labels of any width are fine
    assert model(pixel_values=pixel_values, labels=torch.tensor([0, 1, 2, 3], dtype=torch.int32)).loss > 0


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"weight": float("inf")}, ValueError, "`weight` must be a finite number >= 0"),
        ({"weight": -2.0}, ValueError, "`weight` must be a finite number >= 0"),
        ({"pool_size": True}, ValueError, "`pool_size` must be a positive integer"),
        ({"num_outliers": 50, "pool_size": 20}, ValueError, "`num_outliers`=50 .* `pool_size`=20"),
        ({"temperature": float("inf")}, ValueError, "`temperature` must be a finite number > 0"),
        ({"template": "a photo of {0}"}, ValueError, "`template` must contain exactly one"),
        ({"vocabulary": "no-such-file.txt"}, ValueError, "'no-such-file.txt' is not a file"),
        ({"vocabulary": ["", "   "]}, ValueError, "`vocabulary` is empty"),
        ({"vocabulary": ["tree", 7]}, TypeError, "Vocabulary terms must be strings; got 7"),
        ({"vocabulary": 7}, TypeError, "`vocabulary` must be 'wordnet', a path or a list"),
        ({"side": "image", "outlier_images": torch.zeros(4, 32, 32, 3)}, ValueError, r"\(N, 3, H, W\) tensor"),
        ({"side": "image", "outlier_images": torch.zeros(0, 3, 32, 32)}, ValueError, "`outlier_images` is empty"),
    ],
)
def test_dor_config_rejects_bad_settings(kwargs, error, message):
    with pytest.raises(error, match=message):
        DORConfig(**kwargs)


def test_unreadable_vocabulary_file_names_its_path(tmp_path, make_model):
    path = tmp_path / "terms.txt"
    path.write_bytes("tree\ncaf\xe9\n".encode("latin-1"))  # not UTF-8
    dor = DORRegularizer(DORConfig(vocabulary=str(path), pool_size=1, cache_features=False))
    with pytest.raises(ValueError, match=f"{path}.*cannot be read as UTF-8"):
        dor.build_pool(make_model("coop"), progress=False)
    with pytest.raises(ValueError, match="is not a file"):
        DORConfig(vocabulary=str(tmp_path))  # a folder


def test_pool_larger_than_the_vocabulary_fails_before_encoding_it(make_model, tmp_path):
    model = make_model("coop")
    dor = DORRegularizer(DORConfig(vocabulary=VOCABULARY + ["Cat", "DOG"], pool_size=100, cache_dir=str(tmp_path)))
    with pytest.raises(ValueError, match=f"`pool_size`=100 but the vocabulary has only {len(VOCABULARY)} terms"):
        dor.build_pool(model, progress=False)
    assert not list(tmp_path.rglob("*.safetensors"))  # nothing was encoded
    only_classes = DORRegularizer(DORConfig(vocabulary=["Cat", "dog_"], pool_size=1, cache_features=False))
    with pytest.raises(ValueError, match="has only 0 terms"):
        only_classes.build_pool(model, progress=False)


def test_more_outliers_than_outlier_images(make_model):
    dor = DORRegularizer(DORConfig(side="image", outlier_images=outlier_images(3), num_outliers=5))
    with pytest.raises(ValueError, match="`num_outliers`=5 but the outlier pool holds only 3"):
        dor.build_pool(make_model("vpt"), progress=False)


def test_missing_wordnet_says_how_to_get_it(make_model, tmp_path, monkeypatch):
    if vocabulary_module._nltk_wordnet_path() is not None:
        pytest.skip("nltk's own WordNet corpus is installed here, so it is always found")
    monkeypatch.setattr(vocabulary_module, "WORDNET_SEARCH_DIRS", (str(tmp_path / "nowhere"),))
    monkeypatch.delenv("WNSEARCHDIR", raising=False)
    dor = DORRegularizer(DORConfig(cache_dir=str(tmp_path)))  # vocabulary="wordnet", the default
    with pytest.raises(LookupError) as error:
        dor.build_pool(make_model("coop"), progress=False)
    message = str(error.value)
    assert "nltk.download('wordnet')" in message and "apt-get install" in message and "wordnet-base" in message


@pytest.mark.parametrize(
    ("key", "trainer_kwargs", "error", "message"),
    [
        ("coop", {"optimizer_name": "adamw"}, ValueError, "`optimizer_name` must be one of \\['adam', 'sgd'\\]"),
        ("coop", {"optimizer_name": "sgd", "optimizer_kwargs": {"momentm": 0.9}}, ValueError, "'momentm'"),
        ("coop", {"optimizer_kwargs": [("momentum", 0.9)]}, TypeError, "`optimizer_kwargs` must be a dict"),
        ("coop", {"scheduler_name": "cosine"}, ValueError, "`scheduler_name` must be one of \\['protocol'\\]"),
        ("coop", {"scheduler_kwargs": {"warmup_epochs": 0}}, ValueError, "only apply with scheduler_name"),
        ("coop", {"optimizer_kwargs": {"momentum": 0.0}}, ValueError, "only apply with optimizer_name"),
        ("coop", {"dor": "yes"}, TypeError, "`dor` must be a DORConfig"),
        ("coop", {"args": "out"}, TypeError, "`args` must be a transformers TrainingArguments"),
        ("vpt", {"dor": DORConfig(side="text", vocabulary=VOCABULARY)}, ValueError, "no text prompts.*side='image'"),
        (
            "coop",
            {"dor": DORConfig(side="image", outlier_images=outlier_images())},
            ValueError,
            "no image prompts.*side='text'",
        ),
        (
            "vpt",
            {"dor": DORConfig(side="image", outlier_images=torch.zeros(2, 3, 64, 64))},
            ValueError,
            r"`outlier_images` are \(64, 64\) pixels but the model takes 32x32",
        ),
        ("vpt", {"dor": DORConfig(vocabulary=VOCABULARY)}, ValueError, "needs `outlier_images`"),  # VPT: image side
    ],
)
def test_dor_trainer_arguments_are_checked_at_construction(make_model, tmp_path, key, trainer_kwargs, error, message):
    kwargs = {"args": training_args(str(tmp_path)), "compute_metrics": None, **trainer_kwargs}
    with pytest.raises(error, match=message):
        DORTrainer(model=make_model(key), **kwargs)


def test_dor_trainer_rejects_models_it_cannot_train(tiny_clip_path, tmp_path):
    with pytest.raises(TypeError, match="DOR needs a peft-dor prompt model"):
        DORTrainer(model=CLIPModel.from_pretrained(tiny_clip_path), args=training_args(str(tmp_path)))


def test_protocol_schedule_needs_a_learning_rate(make_model, tmp_path):
    with pytest.raises(ValueError, match="positive TrainingArguments.learning_rate"):
        DORTrainer(
            model=make_model("coop"), args=training_args(str(tmp_path), learning_rate=0.0), scheduler_name="protocol"
        )


def test_resume_from_a_missing_or_empty_checkpoint(make_model, tmp_path):
    trainer = DORTrainer(
        model=make_model("coop"), args=training_args(str(tmp_path), max_steps=1), compute_metrics=None
    )
    with pytest.raises(ValueError, match="is not a folder"):
        trainer.train(resume_from_checkpoint=str(tmp_path / "checkpoint-9"))
    os.makedirs(tmp_path / "checkpoint-9")
    with pytest.raises(ValueError, match="incomplete.*no adapter_model.safetensors; no trainer_state.json"):
        trainer.train(resume_from_checkpoint=str(tmp_path / "checkpoint-9"))
    with pytest.raises(ValueError, match="holds no complete checkpoint"):
        trainer.train(resume_from_checkpoint=True)
    assert trainer.state.global_step == 0
