"""Datasets for CLIP prompt tuning: the benchmark registry, loaders, few-shot and base/new splits, transforms.

Everything is built on Hugging Face ``datasets``: any image-classification ``Dataset`` with an image column and a
``ClassLabel`` column (a local image folder, a Hub dataset id, one built in memory, or the paper's datasets in the
CoOp folder layout) becomes a few-shot benchmark. ``docs/data.md`` is the guide.

Example:
    ```python
    from peft_dor.data import base_to_new_benchmarks, load_benchmark

    splits = load_benchmark("dtd", data_root="~/data")
    base, new = base_to_new_benchmarks(splits, shots=16, seed=1, name="dtd")
    base.class_names, base.template   # 24 base classes, '{} texture.'
    ```
"""

from .benchmarks import (
    BASE_TO_NEW_DATASETS,
    BENCHMARKS,
    DOMAIN_GENERALIZATION_TARGETS,
    BenchmarkInfo,
    clean_class_name,
    find_benchmark,
    get_benchmark,
)
from .feature_cache import FeatureViewCollator, build_feature_cache, check_image_features_cacheable, choose_views
from .loaders import (
    load_benchmark,
    load_coop_benchmark,
    load_hub_dataset,
    load_image_folder,
    load_split_file,
    prepare_splits,
    read_classnames,
)
from .splits import (
    FewShotBenchmark,
    base_to_new_benchmarks,
    build_few_shot_benchmark,
    few_shot_indices,
    image_keys,
    relabel,
    sample_few_shot,
    split_base_new,
    subsample_classes,
)
from .templates import CANONICAL_TEMPLATES, DOR_OUTLIER_TEMPLATE, template_for
from .transforms import (
    CLIPImageTransform,
    ImageClassificationCollator,
    TransformEpochCallback,
    UnreadableImageError,
    load_image,
    load_image_processor,
    random_resized_crop_box,
    to_rgb,
    with_clip_transform,
)

__all__ = [
    "FeatureViewCollator",
    "build_feature_cache",
    "check_image_features_cacheable",
    "choose_views",
    "BASE_TO_NEW_DATASETS",
    "BENCHMARKS",
    "CANONICAL_TEMPLATES",
    "DOMAIN_GENERALIZATION_TARGETS",
    "DOR_OUTLIER_TEMPLATE",
    "BenchmarkInfo",
    "CLIPImageTransform",
    "FewShotBenchmark",
    "ImageClassificationCollator",
    "TransformEpochCallback",
    "UnreadableImageError",
    "base_to_new_benchmarks",
    "build_few_shot_benchmark",
    "clean_class_name",
    "few_shot_indices",
    "find_benchmark",
    "get_benchmark",
    "image_keys",
    "load_benchmark",
    "load_coop_benchmark",
    "load_hub_dataset",
    "load_image",
    "load_image_folder",
    "load_image_processor",
    "load_split_file",
    "prepare_splits",
    "random_resized_crop_box",
    "read_classnames",
    "relabel",
    "sample_few_shot",
    "split_base_new",
    "subsample_classes",
    "template_for",
    "to_rgb",
    "with_clip_transform",
]
