"""Dynamic Outlier Regularization: outlier vocabularies, the near-OOD pool, the sampler and the loss.

Example:
    ```python
    from peft_dor.dor import DORConfig, DORRegularizer, wordnet_nouns

    nouns = wordnet_nouns()  # 117,798 WordNet 3.0 noun lemma names
    dor = DORRegularizer(DORConfig(pool_size=5000))
    ```

nltk is imported only when a WordNet vocabulary is loaded.
"""

from .config import DORConfig
from .outliers import (
    OutlierPool,
    OutlierSampler,
    build_image_pool,
    build_text_pool,
    draw_number,
    encode_zero_shot,
    select_pool,
    unwrap_prompt_model,
    vocabulary_features,
)
from .regularizer import (
    DEFAULT_WEIGHT,
    DORRegularizer,
    OutlierDraw,
    default_weight,
    method_defaults,
    method_key,
    outlier_drift,
)
from .vocabulary import (
    clean_terms,
    default_cache_dir,
    install_wordnet_copy,
    load_vocabulary,
    read_vocabulary_file,
    term_key,
    wordnet_nouns,
)

__all__ = [
    "DEFAULT_WEIGHT",
    "DORConfig",
    "DORRegularizer",
    "OutlierDraw",
    "OutlierPool",
    "OutlierSampler",
    "build_image_pool",
    "build_text_pool",
    "clean_terms",
    "default_cache_dir",
    "default_weight",
    "draw_number",
    "encode_zero_shot",
    "install_wordnet_copy",
    "load_vocabulary",
    "method_defaults",
    "method_key",
    "outlier_drift",
    "read_vocabulary_file",
    "select_pool",
    "term_key",
    "unwrap_prompt_model",
    "vocabulary_features",
    "wordnet_nouns",
]
