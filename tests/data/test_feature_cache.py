"""The image-feature cache: exact against pixel training, keyed on everything that changes it, refused where unsafe."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from peft import get_peft_model
from transformers import CLIPModel

import peft_dor
import peft_dor.testing
from peft_dor.data import CLIPImageTransform, load_image_processor, with_clip_transform
from peft_dor.data.feature_cache import (
    FeatureViewCollator,
    build_feature_cache,
    check_image_features_cacheable,
    choose_views,
    feature_cache_key,
)

from ..helpers import png_dataset


def image_dataset(names, n: int = 6, seed: int = 0):
    return png_dataset([i % len(names) for i in range(n)], names, shape=(40, 48), seed=seed)


@pytest.fixture
def model(tiny_clip_path, class_names):
    return get_peft_model(
        CLIPModel.from_pretrained(tiny_clip_path), peft_dor.CoOpConfig(class_names=class_names, n_ctx=4)
    )


@pytest.fixture
def transform(tiny_clip_path):
    return CLIPImageTransform(load_image_processor(tiny_clip_path), train=True, seed=3)


@pytest.fixture
def dataset(class_names):
    return image_dataset(class_names)


def pixel_views(dataset, transform, rows, views) -> torch.Tensor:
    """The pixels a pixel-training run draws for ``rows`` at the transform's epochs ``views`` (independent path)."""
    out = []
    for row, view in zip(rows, views, strict=True):
        transform.set_epoch(int(view))
        out.append(with_clip_transform(dataset, transform)[int(row)]["pixel_values"])
    return torch.stack(out)


def test_training_from_the_cache_equals_training_from_pixels_on_the_same_views(model, dataset, transform, tmp_path):
    features = build_feature_cache(model, dataset, transform, num_views=3, cache_dir=tmp_path)
    assert features.column_names == ["label", "image_embeds", "index"] and len(features) == len(dataset)
    ctx = model.get_base_model().clip.text_model.embeddings.coop_ctx["default"]
    collator = FeatureViewCollator(seed=7)
    model.train()
    for epoch in (0, 1):
        collator.set_epoch(epoch)
        batch = collator([features[i] for i in range(len(features))])
        views = choose_views(range(len(features)), 3, seed=7, epoch=epoch)
        pixels = pixel_views(dataset, transform, range(len(dataset)), views)
        cached = model(**batch, extra_names=["lamp", "tree"])
        plain = model(pixel_values=pixels, labels=batch["labels"], extra_names=["lamp", "tree"])
        (grad_cached,) = torch.autograd.grad(cached.loss + cached.extra_text_embeds.sum(), ctx)
        (grad_plain,) = torch.autograd.grad(plain.loss + plain.extra_text_embeds.sum(), ctx)
        torch.testing.assert_close(cached.logits, plain.logits, atol=1e-5, rtol=0)
        torch.testing.assert_close(cached.loss, plain.loss, atol=1e-5, rtol=0)
        torch.testing.assert_close(grad_cached, grad_plain, atol=1e-5, rtol=1e-5)


def test_views_are_the_transforms_epochs_and_stored_as_the_tower_projects_them(model, dataset, transform, tmp_path):
    features = build_feature_cache(model, dataset, transform, num_views=2, cache_dir=tmp_path).with_format("torch")[:]
    clip = model.get_base_model().clip
    for view in (0, 1):
        pixels = pixel_views(dataset, transform, range(len(dataset)), [view] * len(dataset))
        with torch.no_grad():
            expected = clip.get_image_features(pixel_values=pixels).pooler_output
        torch.testing.assert_close(features["image_embeds"][:, view], expected, atol=1e-5, rtol=0)
    assert not torch.allclose(features["image_embeds"][:, 0], features["image_embeds"][:, 1])
    assert features["index"].tolist() == list(range(len(dataset)))


def test_second_build_memory_maps_the_same_file_and_the_key_covers_every_input(
    model, dataset, transform, tmp_path, tiny_clip_path, class_names
):
    first = build_feature_cache(model, dataset, transform, num_views=2, cache_dir=tmp_path)
    assert first.cache_files and first.cache_files[0]["filename"].startswith(str(tmp_path))
    calls = []
    model.get_base_model().clip.vision_model.register_forward_hook(lambda *a: calls.append(1))
    second = build_feature_cache(model, dataset, transform, num_views=2, cache_dir=tmp_path)
    assert calls == [] and second.cache_files == first.cache_files
    np.testing.assert_array_equal(
        second.with_format("numpy")[:]["image_embeds"], first.with_format("numpy")[:]["image_embeds"]
    )

    key = feature_cache_key(model, dataset, transform, 2)
    other_seed = CLIPImageTransform(transform.processor, train=True, seed=4)
    other_clip = get_peft_model(
        CLIPModel.from_pretrained(peft_dor.testing.build_tiny_clip(tmp_path / "clip1", seed=1)),
        peft_dor.CoOpConfig(class_names=class_names, n_ctx=4, tokenizer_name_or_path=tiny_clip_path),
    )
    variants = [
        feature_cache_key(model, dataset, transform, 3),
        feature_cache_key(model, dataset, other_seed, 2),
        feature_cache_key(model, dataset.select(range(4)), transform, 2),
        feature_cache_key(other_clip, dataset, transform, 2),
        feature_cache_key(model.to(torch.bfloat16), dataset, transform, 2),
    ]
    assert len({key, *variants}) == 1 + len(variants)
    # the caller's transform is not moved to another epoch by building
    assert transform.epoch == 0


def test_view_draws_are_pure_uniform_and_independent_of_how_rows_are_split():
    rows = np.arange(6000)
    views = choose_views(rows, 4, seed=1, epoch=0)
    np.testing.assert_array_equal(views, choose_views(rows, 4, seed=1, epoch=0))
    # two "ranks" holding alternate rows draw exactly what one process draws for them
    np.testing.assert_array_equal(
        np.concatenate([choose_views(rows[0::2], 4, 1, 0), choose_views(rows[1::2], 4, 1, 0)]),
        np.concatenate([views[0::2], views[1::2]]),
    )
    counts = np.bincount(views, minlength=4)
    assert counts.min() > 1350 and counts.max() < 1650  # uniform (1500 each)
    assert (choose_views(rows, 4, seed=1, epoch=1) != views).mean() > 0.6
    assert (choose_views(rows, 4, seed=2, epoch=0) != views).mean() > 0.6
    assert set(choose_views(rows, 1, seed=5, epoch=3).tolist()) == {0}


def test_collator_follows_the_trainer_epoch_and_needs_the_index_column():
    from transformers import TrainerControl, TrainerState

    collator = FeatureViewCollator(seed=0)
    state = TrainerState()
    state.epoch = 2.75  # resumed mid-epoch: still epoch 2
    collator.on_epoch_begin(None, state, TrainerControl())
    assert collator.epoch == 2
    row = {"label": 1, "image_embeds": np.ones((2, 3), np.float32)}
    with pytest.raises(ValueError, match="remove_unused_columns=False"):
        collator([row])
    with pytest.raises(ValueError, match="empty batch"):
        collator([])


class RecordingCollator(FeatureViewCollator):
    """Records the epoch of every batch it collates."""

    def __init__(self, seed: int = 0) -> None:
        super().__init__(seed)
        self.epochs: list[int] = []

    def __call__(self, examples):
        self.epochs.append(self.epoch)
        return super().__call__(examples)


def test_coop_dor_trains_end_to_end_from_the_cache(model, dataset, transform, tmp_path):
    from transformers import TrainingArguments

    from peft_dor import DORConfig, DORTrainer

    features = build_feature_cache(model, dataset, transform, num_views=2, cache_dir=tmp_path)
    collator = RecordingCollator(seed=0)
    args = TrainingArguments(
        output_dir=str(tmp_path / "out"),
        per_device_train_batch_size=3,
        num_train_epochs=2,
        learning_rate=0.01,
        remove_unused_columns=False,
        report_to=[],
        use_cpu=True,
        save_strategy="no",
        logging_steps=1,
        disable_tqdm=True,
    )
    dor = DORConfig(vocabulary=["lamp", "tree", "rose", "river", "chair", "cup"], pool_size=4, num_outliers=2)
    ctx = model.get_base_model().clip.text_model.embeddings.coop_ctx["default"]
    before = ctx.detach().clone()

    trainer = DORTrainer(
        model=model,
        args=args,
        train_dataset=features,
        data_collator=collator,
        callbacks=[collator],
        dor=dor,
        compute_metrics=None,
    )
    trainer.train()
    assert sorted(set(collator.epochs)) == [0, 1]
    assert not torch.equal(before, ctx.detach())
    logged = [log for log in trainer.state.log_history if "loss_dor" in log]
    assert logged and all(np.isfinite(log["loss_dor"]) for log in logged)


def test_methods_that_prompt_the_vision_tower_are_refused(tiny_clip_path, class_names, dataset, transform, tmp_path):
    vpt = get_peft_model(CLIPModel.from_pretrained(tiny_clip_path), peft_dor.VPTConfig(class_names=class_names))
    with pytest.raises(ValueError, match=r"VPT cannot train from cached image features.*vision tower"):
        build_feature_cache(vpt, dataset, transform, cache_dir=tmp_path)
    with pytest.raises(ValueError, match="VPT"):
        check_image_features_cacheable(vpt.base_model)
    assert not list(tmp_path.iterdir())


def test_base_clip_and_preprocessed_pixels_without_a_transform(tiny_clip, pixel_values, tmp_path):
    from datasets import Dataset

    dataset = Dataset.from_dict({"pixel_values": pixel_values.numpy(), "label": [0, 1, 2, 3]})
    features = build_feature_cache(tiny_clip, dataset, image_column="pixel_values", cache_dir=tmp_path)
    with torch.no_grad():
        expected = tiny_clip.get_image_features(pixel_values=pixel_values).pooler_output
    stored = features.with_format("torch")[:]["image_embeds"]
    torch.testing.assert_close(stored[:, 0], expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"num_views": 0}, "num_views"),
        ({"num_views": 2, "transform": None}, "set_epoch"),
        ({"image_column": "img"}, "no column 'img'"),
        ({"transformed": True}, "untransformed dataset"),
    ],
)
def test_bad_arguments_are_explained(model, dataset, transform, tmp_path, kwargs, message):
    if kwargs.pop("transformed", False):
        dataset = with_clip_transform(dataset, transform)
    kwargs = {"transform": transform, **kwargs}
    with pytest.raises(ValueError, match=message):
        build_feature_cache(model, dataset, cache_dir=tmp_path, **kwargs)
