"""The procedural image-text world and its shipped pre-trained world CLIP (the demo's model).

``world_clip_path()`` is a folder that plain transformers loads (``CLIPModel``, ``CLIPTokenizer``,
``AutoImageProcessor``), ``world_siglip_path()`` the world SigLIP (``SiglipModel``, the same tokenizer);
``load_world()`` gives the nouns it knows and renders fresh images of them. See ``docs/world.md``.

Example:
    ```python
    import numpy as np
    from transformers import CLIPModel
    from peft_dor.world import load_world, world_clip_path

    clip = CLIPModel.from_pretrained(world_clip_path())
    world = load_world()
    image = world.render(world.nouns[0], np.random.default_rng(0))
    ```
"""

from .world import World, build_world, load_world, world_clip_path, world_siglip_path

__all__ = ["World", "build_world", "load_world", "world_clip_path", "world_siglip_path"]
