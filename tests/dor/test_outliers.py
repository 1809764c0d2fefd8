"""Pool selection (near / far / random), the on-disk feature cache and the sampler."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from peft_dor.dor import (
    DORConfig,
    DORRegularizer,
    OutlierSampler,
    build_text_pool,
    draw_number,
    encode_zero_shot,
    select_pool,
    term_key,
    vocabulary_features,
)

from .conftest import CLASS_NAMES


class TextPassCounter:
    """Counts the rows (prompts) through the text tower, split by whether prompts were suspended (zero-shot)."""

    def __init__(self, model):
        self.wrapper = model.get_base_model()
        self.zero_shot_rows = 0
        self.prompted_rows = 0
        layer_norm = self.wrapper.clip.text_model.final_layer_norm
        self.handle = layer_norm.register_forward_pre_hook(self._count)

    def _count(self, module, args):
        rows = args[0].shape[0]
        if any(layer.suspended for layer in self.wrapper.prompt_layers()):
            self.zero_shot_rows += rows
        else:
            self.prompted_rows += rows


def _reference_features(model, texts):
    """Independent reference: transformers' own CLIP text path on the plain tokenised strings, adapter disabled."""
    wrapper = model.get_base_model()
    tokenizer = wrapper.prompt_tokenizer.tokenizer
    batch = tokenizer(texts, padding=True, return_tensors="pt")
    with model.disable_adapter(), torch.no_grad():
        features = wrapper.clip.get_text_features(**batch).pooler_output
    return F.normalize(features, dim=-1)


def test_zero_shot_features_match_transformers_clip(make_coop, vocabulary):
    model = make_coop(n_ctx=4)
    wrapper = model.get_base_model()
    features, kept = encode_zero_shot(wrapper, vocabulary, "a photo of a {}.", batch_size=7, progress=False)
    assert kept.all()
    # "_" is a space in the prompt text, as in the official prompt learners ("horse_" -> "horse ")
    reference = _reference_features(model, [f"a photo of a {t.replace('_', ' ')}." for t in vocabulary])
    torch.testing.assert_close(features, reference, atol=1e-5, rtol=1e-5)
    # the same as the wrapper's own cached zero-shot features
    torch.testing.assert_close(features, wrapper.zero_shot_text_features(vocabulary, "a photo of a {}."))


def test_near_random_far_pools(make_coop, vocabulary, tmp_path):
    model = make_coop(n_ctx=4)
    wrapper = model.get_base_model()
    pools = {
        selection: build_text_pool(
            wrapper,
            vocabulary,
            CLASS_NAMES,
            pool_size=12,
            selection=selection,
            seed=3,
            cache_dir=tmp_path,
            progress=False,
        )
        for selection in ("near", "random", "far")
    }
    means = {name: float(pool.scores.mean()) for name, pool in pools.items()}
    assert means["near"] > means["random"] > means["far"]
    class_keys = {term_key(c) for c in CLASS_NAMES}
    for pool in pools.values():
        assert len(pool) == 12 and len(set(pool.names)) == 12
        assert not class_keys & {term_key(n) for n in pool.names}
    # hand computation of the score: mean cosine to the zero-shot class features
    classes = wrapper.zero_shot_text_features(CLASS_NAMES, "a photo of a {}.")
    terms = wrapper.zero_shot_text_features(pools["near"].names, "a photo of a {}.")
    torch.testing.assert_close(pools["near"].scores, (terms @ classes.t()).mean(dim=1), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(pools["near"].features, terms, atol=1e-6, rtol=1e-5)
    assert torch.all(pools["near"].scores[:-1] >= pools["near"].scores[1:])
    # every candidate outside the near pool scores at most the pool's lowest score
    all_features, _ = vocabulary_features(wrapper, vocabulary, cache_dir=tmp_path, progress=False)
    outside = [i for i, t in enumerate(vocabulary) if t not in pools["near"].names and term_key(t) not in class_keys]
    assert float((all_features[outside] @ classes.mean(0)).max()) <= float(pools["near"].scores.min()) + 1e-6


def test_feature_cache_is_reused_and_keyed(make_coop, vocabulary, tmp_path):
    model = make_coop(n_ctx=4)
    wrapper = model.get_base_model()
    counter = TextPassCounter(model)
    first, _ = vocabulary_features(wrapper, vocabulary, "a photo of a {}.", tmp_path, progress=False)
    assert counter.zero_shot_rows == len(vocabulary)
    assert len(list(tmp_path.glob("dor-features-*.safetensors"))) == 1
    # a second run (new model object, same weights) reads the cache: no vocabulary pass at all
    fresh = make_coop(n_ctx=4)
    fresh_counter = TextPassCounter(fresh)
    second, _ = vocabulary_features(fresh.get_base_model(), vocabulary, "a photo of a {}.", tmp_path, progress=False)
    assert fresh_counter.zero_shot_rows == 0
    assert torch.equal(first, second)
    # another template or vocabulary is another cache entry
    vocabulary_features(wrapper, vocabulary, "a {} texture.", tmp_path, progress=False)
    vocabulary_features(wrapper, vocabulary[:-1], "a photo of a {}.", tmp_path, progress=False)
    assert len(list(tmp_path.glob("dor-features-*.safetensors"))) == 3


def test_select_pool_sizes_and_determinism():
    scores = torch.tensor([0.1, 0.9, 0.5, 0.9, 0.3, 0.7])
    candidates = torch.tensor([True, True, True, True, False, True])
    assert select_pool(scores, candidates, 3, "near").tolist() == [1, 3, 5]
    assert select_pool(scores, candidates, 2, "far").tolist() == [0, 2]
    random_pool = select_pool(scores, candidates, 3, "random", seed=5)
    assert torch.equal(random_pool, select_pool(scores, candidates, 3, "random", seed=5))
    assert 4 not in random_pool.tolist()
    assert len(select_pool(scores, candidates, 50, "near")) == 5  # fewer candidates than asked: all of them
    with pytest.raises(ValueError, match="selection"):
        select_pool(scores, candidates, 3, "nearest")


def test_uniform_sampler_is_a_pure_function_of_seed_and_draw():
    sampler = OutlierSampler(pool_size=100, num_outliers=10, seed=7)
    again = OutlierSampler(pool_size=100, num_outliers=10, seed=7)
    draws = [sampler.indices(d) for d in range(20)]
    assert all(torch.equal(a, again.indices(d)) for d, a in enumerate(draws))
    assert all(len(set(d.tolist())) == 10 for d in draws)  # without replacement
    assert len({tuple(d.tolist()) for d in draws}) == 20
    assert not torch.equal(draws[0], OutlierSampler(100, 10, seed=8).indices(0))
    # drawing out of order (a resumed run) gives the same outliers
    assert torch.equal(OutlierSampler(100, 10, seed=7).indices(13), draws[13])
    # uniform: over many draws every entry comes up about equally often
    counts = torch.bincount(torch.cat([sampler.indices(d) for d in range(2000)]), minlength=100).float()
    assert counts.min() > 140 and counts.max() < 260  # expected 200 each


def test_small_pool_is_drawn_whole():
    assert sorted(OutlierSampler(5, 10, seed=0).indices(3).tolist()) == [0, 1, 2, 3, 4]
    assert sorted(OutlierSampler(5, 10, seed=0, sampling="cycle").indices(3).tolist()) == [0, 1, 2, 3, 4]


def test_similarity_sampling_prefers_high_scores():
    scores = torch.linspace(0, 1, 50)
    sampler = OutlierSampler(50, 5, seed=1, sampling="similarity", scores=scores, temperature=0.1)
    drawn = torch.cat([sampler.indices(d) for d in range(300)])
    assert float(scores[drawn].mean()) > 0.75  # uniform would give 0.5
    assert all(len(set(sampler.indices(d).tolist())) == 5 for d in range(20))
    with pytest.raises(ValueError, match="score"):
        OutlierSampler(50, 5, sampling="similarity")


def test_cycle_sampling_covers_the_pool_once_per_cycle():
    sampler = OutlierSampler(pool_size=12, num_outliers=4, seed=2, sampling="cycle")
    first_cycle = torch.cat([sampler.indices(d) for d in range(3)])
    assert sorted(first_cycle.tolist()) == list(range(12))
    second_cycle = torch.cat([sampler.indices(d) for d in range(3, 6)])
    assert sorted(second_cycle.tolist()) == list(range(12))
    assert not torch.equal(first_cycle, second_cycle)


def test_draw_numbers():
    assert draw_number("step", step=3) == 3
    assert draw_number("step", step=3, micro_step=1, accumulation_steps=4) == 13
    assert draw_number("epoch", step=99, epoch=2) == 2
    with pytest.raises(ValueError, match="resample"):
        draw_number("batch", step=0)


def test_epoch_resampling_keeps_outliers_for_a_whole_epoch(make_coop, vocabulary, tmp_path):
    model = make_coop(n_ctx=4)
    dor = DORRegularizer(DORConfig(vocabulary=vocabulary, pool_size=20, resample="epoch", cache_dir=str(tmp_path)))
    dor.build_pool(model, seed=0, progress=False)
    same_epoch = [dor.draw(step=s, epoch=1).names for s in range(5)]
    assert all(names == same_epoch[0] for names in same_epoch)
    assert dor.draw(step=9, epoch=2).names != same_epoch[0]
