"""The image-feature cache on SigLIP: features as wide as SigLIP's vision head, and training from them is training
from pixels."""

from __future__ import annotations

import torch
from peft import get_peft_model
from transformers import SiglipModel

from peft_dor import CoOpConfig
from peft_dor.data import CLIPImageTransform, load_image_processor, with_clip_transform
from peft_dor.data.feature_cache import FeatureViewCollator, build_feature_cache, choose_views

from ..helpers import png_dataset
from ..method_cases import CLASS_NAMES


def test_training_from_the_cache_equals_training_from_pixels(tiny_siglip_path, tmp_path):
    model = get_peft_model(SiglipModel.from_pretrained(tiny_siglip_path), CoOpConfig(class_names=CLASS_NAMES, n_ctx=4))
    dataset = png_dataset([i % len(CLASS_NAMES) for i in range(6)], CLASS_NAMES, shape=(40, 48), seed=0)
    transform = CLIPImageTransform(load_image_processor(tiny_siglip_path), train=True, seed=3)
    features = build_feature_cache(model, dataset, transform, num_views=2, cache_dir=tmp_path)
    assert len(features[0]["image_embeds"][0]) == 32  # SigLIP's vision head keeps the vision width
    collator = FeatureViewCollator(seed=7)
    batch = collator([features[i] for i in range(len(features))])
    pixels = []
    for row, view in enumerate(choose_views(range(len(features)), 2, seed=7, epoch=0)):
        transform.set_epoch(int(view))
        pixels.append(with_clip_transform(dataset, transform)[row]["pixel_values"])
    model.train()
    cached = model(**batch)
    plain = model(pixel_values=torch.stack(pixels), labels=batch["labels"])
    torch.testing.assert_close(cached.logits, plain.logits, atol=1e-5, rtol=0)
