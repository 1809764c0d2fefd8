"""The procedural image-text world: 100 object nouns, each one combination of visual attributes.

A noun names one (colour, shape, pattern) triple: 5 colours x 5 shapes x 4 patterns = 100 nouns. Size (big or small)
varies within every noun and appears only in captions. Images are drawn at 32 px with random position, hue, brightness,
background and pixel noise. Nouns that share attributes look alike and are described alike, so they are semantic
neighbours: the world's notion of "near" out-of-distribution words.

The nouns are made-up words (``"bafo"``, ...), so the only thing a model can know about them is what it learned from
this world's images and captions.

Example:
    ```python
    import numpy as np
    from peft_dor.world import load_world

    world = load_world()
    noun = world.nouns[0]
    world.attributes(noun)                         # {'colour': 'red', 'shape': 'round', 'pattern': 'plain'}
    image = world.render(noun, np.random.default_rng(0))   # a 32 x 32 PIL image
    ```
"""

from __future__ import annotations

import colorsys
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from PIL import Image as PILImage

#: name of the world's metadata file inside a world CLIP folder
WORLD_FILE = "world.json"
WORLD_VERSION = 1

#: colour word -> hue (fraction of the colour circle)
COLOURS = {"red": 0.0, "yellow": 0.15, "green": 0.33, "blue": 0.62, "purple": 0.8}
SHAPES = ("round", "square", "triangle", "diamond", "cross")
PATTERNS = ("plain", "striped", "dotted", "checked")
SIZES = ("big", "small")

#: templates of noun captions (the first is the zero-shot and DOR template)
NOUN_TEMPLATES = ("a photo of a {}.", "a picture of a {}.", "an image of a {}.", "a {}.", "a photo of the {}.")
#: templates of attribute captions; ``{}`` is filled with the kept attribute words
ATTRIBUTE_TEMPLATES = ("a picture of a {} thing.", "a photo of a {} thing.", "a {} thing.")
#: every word a caption or template can contain besides nouns and attribute words ("x" is the prompt placeholder)
FUNCTION_WORDS = ("a", "an", "the", "of", "photo", "picture", "image", "thing", "x")

_ONSETS = "bdfgklmnprstvz"
_VOWELS = "aeiou"


def _noun_names(count: int, seed: int) -> list[str]:
    """``count`` distinct made-up consonant-vowel-consonant-vowel words, drawn with a fixed seed."""
    rng = np.random.default_rng(seed)
    reserved = set(COLOURS) | set(SHAPES) | set(PATTERNS) | set(SIZES) | set(FUNCTION_WORDS)
    names: list[str] = []
    while len(names) < count:
        c1, c2 = rng.choice(list(_ONSETS), 2)
        v1, v2 = rng.choice(list(_VOWELS), 2)
        word = f"{c1}{v1}{c2}{v2}"
        if word not in names and word not in reserved:
            names.append(word)
    return names


@dataclass(frozen=True)
class World:
    """The nouns and their attributes, the renderer and the caption sampler.

    Attributes:
        nouns: the object nouns, in world order (colour-major, then shape, then pattern).
        noun_attributes: per noun, ``{"colour": ..., "shape": ..., "pattern": ...}``.
        image_size: side of the rendered images in pixels.
    """

    nouns: list[str]
    noun_attributes: dict[str, dict[str, str]]
    image_size: int = 32
    version: int = WORLD_VERSION
    _index: dict[str, int] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._index.update({noun: i for i, noun in enumerate(self.nouns)})

    # ------------------------------------------------------------------------------------------------ vocabulary
    @property
    def attribute_words(self) -> list[str]:
        """Every attribute word: colours, shapes, patterns and sizes."""
        return [*COLOURS, *SHAPES, *PATTERNS, *SIZES]

    @property
    def words(self) -> list[str]:
        """Every word the world's captions and templates use: each is one token of the world tokenizer."""
        return [*FUNCTION_WORDS, *self.attribute_words, *self.nouns]

    def attributes(self, noun: str) -> dict[str, str]:
        """``{"colour", "shape", "pattern"}`` of ``noun``."""
        if noun not in self._index:
            raise KeyError(f"{noun!r} is not a noun of this world; see `World.nouns`.")
        return dict(self.noun_attributes[noun])

    def nouns_with(self, **attributes: str) -> list[str]:
        """The nouns (world order) whose attributes match every ``name=value`` given, e.g. ``colour="red"``."""
        return [n for n in self.nouns if all(self.noun_attributes[n][k] == v for k, v in attributes.items())]

    def shared_attributes(self, first: str, second: str) -> int:
        """How many of colour, shape and pattern two nouns share (3 only for the same noun)."""
        a, b = self.noun_attributes[first], self.noun_attributes[second]
        return sum(a[k] == b[k] for k in a)

    # ------------------------------------------------------------------------------------------------- rendering
    def render(self, noun: str, rng: np.random.Generator, size: str | None = None) -> PILImage.Image:
        """One RGB image of ``noun``; ``size`` is ``"big"``, ``"small"`` or ``None`` (drawn from ``rng``)."""
        from PIL import Image

        array = self.render_array(noun, rng, size)
        return Image.fromarray(array, mode="RGB")

    def render_array(self, noun: str, rng: np.random.Generator, size: str | None = None) -> np.ndarray:
        """:meth:`render` as a ``(H, W, 3)`` uint8 array (what pre-training uses, without PIL)."""
        attributes = self.attributes(noun)
        if size is None:
            size = SIZES[int(rng.integers(len(SIZES)))]
        if size not in SIZES:
            raise ValueError(f"`size` must be one of {SIZES} or None; got {size!r}.")
        return draw_object(attributes, size, rng, self.image_size)

    def contact_sheet(
        self, nouns: Sequence[str] | None = None, per_noun: int = 2, seed: int = 0, scale: int = 2
    ) -> PILImage.Image:
        """One image with ``per_noun`` renders (big, small, ...) of each noun in a column, ``scale`` x enlarged."""
        from PIL import Image

        nouns = list(nouns if nouns is not None else self.nouns)
        rng = np.random.default_rng(seed)
        step = self.image_size + 2
        sheet = np.zeros((per_noun * step, len(nouns) * step, 3), dtype=np.uint8)
        for column, noun in enumerate(nouns):
            for row in range(per_noun):
                image = self.render_array(noun, rng, SIZES[row % len(SIZES)])
                sheet[row * step : row * step + self.image_size, column * step : column * step + self.image_size] = (
                    image
                )
        picture = Image.fromarray(sheet, mode="RGB")
        return picture.resize((picture.width * scale, picture.height * scale), Image.NEAREST)

    # -------------------------------------------------------------------------------------------------- captions
    def sample_caption(self, noun: str, size: str, rng: np.random.Generator, noun_fraction: float = 0.6) -> str:
        """A caption consistent with an image of ``noun`` at ``size``.

        With probability ``noun_fraction`` a noun caption (a random template, the size word in a quarter of them),
        otherwise an attribute caption: size, colour, pattern and shape words, each kept with probability 1/2 (at
        least one kept), in that order, as in "a picture of a big red striped thing.".
        """
        if rng.random() < noun_fraction:
            template = NOUN_TEMPLATES[int(rng.integers(len(NOUN_TEMPLATES)))]
            word = f"{size} {noun}" if rng.random() < 0.25 else noun
            return template.format(word)
        attributes = self.noun_attributes[noun]
        words = [size, attributes["colour"], attributes["pattern"], attributes["shape"]]
        keep = rng.random(len(words)) < 0.5
        if not keep.any():
            keep[int(rng.integers(len(words)))] = True
        template = ATTRIBUTE_TEMPLATES[int(rng.integers(len(ATTRIBUTE_TEMPLATES)))]
        return template.format(" ".join(w for w, k in zip(words, keep, strict=True) if k))

    def caption_matches(self, caption: str, noun: str, size: str) -> bool:
        """Whether ``caption`` (from :meth:`sample_caption`) is true of an image of ``noun`` at ``size``."""
        words = set(caption.rstrip(".").split())
        attributes = self.noun_attributes[noun]
        nouns_named = words & self._index.keys()
        if nouns_named and nouns_named != {noun}:
            return False
        if words & set(SIZES) and size not in words:
            return False
        for key, values in (("colour", COLOURS), ("shape", SHAPES), ("pattern", PATTERNS)):
            named = words & set(values)
            if named and attributes[key] not in named:
                return False
        return True

    # ---------------------------------------------------------------------------------------------- persistence
    def to_dict(self) -> dict:
        return {
            "version": self.version,
            "image_size": self.image_size,
            "nouns": self.nouns,
            "noun_attributes": self.noun_attributes,
            "colours": COLOURS,
            "shapes": list(SHAPES),
            "patterns": list(PATTERNS),
            "sizes": list(SIZES),
            "noun_templates": list(NOUN_TEMPLATES),
            "attribute_templates": list(ATTRIBUTE_TEMPLATES),
        }

    def save(self, directory: str | os.PathLike) -> str:
        """Write ``world.json`` into ``directory`` and return its path."""
        path = Path(directory) / WORLD_FILE
        path.write_text(json.dumps(self.to_dict(), indent=1) + "\n")
        return str(path)


def build_world(seed: int = 0, image_size: int = 32) -> World:
    """The world of 5 colours x 5 shapes x 4 patterns, with made-up noun names drawn from ``seed``."""
    combos = [{"colour": c, "shape": s, "pattern": p} for c in COLOURS for s in SHAPES for p in PATTERNS]
    names = _noun_names(len(combos), seed)
    return World(nouns=names, noun_attributes=dict(zip(names, combos, strict=True)), image_size=image_size)


def world_clip_path() -> str:
    """The folder of the shipped pre-trained world CLIP (``CLIPModel`` / ``CLIPTokenizer`` / image processor)."""
    return str(Path(__file__).with_name("model"))


def world_siglip_path() -> str:
    """The folder of the shipped world SigLIP (``SiglipModel`` pre-trained with the sigmoid loss on the same world,
    with the world's ``CLIPTokenizer`` and image processor; see docs/world.md)."""
    return str(Path(__file__).with_name("model_siglip"))


def load_world(path: str | os.PathLike | None = None) -> World:
    """The world a world CLIP folder was trained on (``world.json`` in ``path``; default :func:`world_clip_path`)."""
    folder = Path(path) if path is not None else Path(world_clip_path())
    file = folder / WORLD_FILE if folder.is_dir() else folder
    if not file.is_file():
        raise FileNotFoundError(
            f"No {WORLD_FILE} in {folder}: pass the folder of a world CLIP (written by "
            "`python -m peft_dor.world.pretrain --output_dir DIR`), or None for the shipped one."
        )
    data = json.loads(file.read_text())
    if data.get("version") != WORLD_VERSION:
        raise ValueError(
            f"{file} is world version {data.get('version')}; this peft-dor reads version {WORLD_VERSION}."
        )
    return World(nouns=list(data["nouns"]), noun_attributes=data["noun_attributes"], image_size=data["image_size"])


# ----------------------------------------------------------------------------------------------------- the drawing
def _shape_mask(shape: str, x: np.ndarray, y: np.ndarray, radius: float) -> np.ndarray:
    """Pixels inside ``shape`` of half-width ``radius``, in coordinates centred on the object."""
    if shape == "round":
        return x**2 + y**2 <= radius**2
    if shape == "square":
        half = radius * 0.85
        return (np.abs(x) <= half) & (np.abs(y) <= half)
    if shape == "triangle":  # pointing up, base at y = +0.8 r
        return (y <= 0.8 * radius) & (y >= -radius + 2 * np.abs(x))
    if shape == "diamond":
        return np.abs(x) + np.abs(y) <= radius
    if shape == "cross":
        arm = radius * 0.35
        inside = (np.abs(x) <= radius) & (np.abs(y) <= radius)
        return inside & ((np.abs(x) <= arm) | (np.abs(y) <= arm))
    raise ValueError(f"unknown shape {shape!r}")


def _pattern_mask(pattern: str, x: np.ndarray, y: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Pixels of the pattern's second tone (empty for ``"plain"``), with a random phase."""
    period = rng.uniform(3.6, 4.6)
    phase_x, phase_y = rng.uniform(0, period, 2)
    if pattern == "plain":
        return np.zeros_like(x, dtype=bool)
    if pattern == "striped":  # diagonal stripes, either direction
        u = x + y if rng.random() < 0.5 else x - y
        return ((u + phase_x) % period) < period / 2
    if pattern == "dotted":
        dx = (x + phase_x) % period - period / 2
        dy = (y + phase_y) % period - period / 2
        return dx**2 + dy**2 <= (period * 0.28) ** 2
    if pattern == "checked":
        return ((np.floor((x + phase_x) / (period / 2)) + np.floor((y + phase_y) / (period / 2))) % 2) == 0
    raise ValueError(f"unknown pattern {pattern!r}")


def draw_object(attributes: dict[str, str], size: str, rng: np.random.Generator, image_size: int = 32) -> np.ndarray:
    """Draw one object with the given colour, shape and pattern at ``size`` as a ``(H, W, 3)`` uint8 array."""
    radius = rng.uniform(10.0, 13.0) if size == "big" else rng.uniform(5.5, 7.5)
    radius *= image_size / 32
    margin = radius + 1
    cx, cy = rng.uniform(margin, image_size - margin, 2)
    yy, xx = np.mgrid[0:image_size, 0:image_size].astype(np.float64) + 0.5
    x, y = xx - cx, yy - cy
    hue = (COLOURS[attributes["colour"]] + rng.normal(0, 0.02)) % 1.0
    value = rng.uniform(0.7, 1.0)
    base = np.array(colorsys.hsv_to_rgb(hue, rng.uniform(0.75, 1.0), value))
    second = base * rng.uniform(0.35, 0.5)  # the pattern's darker tone of the same colour
    grey = rng.uniform(0.25, 0.75)
    image = np.empty((image_size, image_size, 3))
    image[:] = grey + rng.normal(0, 0.03, 3)  # background: a slightly tinted grey
    inside = _shape_mask(attributes["shape"], x, y, radius)
    tone = _pattern_mask(attributes["pattern"], x, y, rng)
    image[inside & ~tone] = base
    image[inside & tone] = second
    image += rng.normal(0, 0.04, image.shape)
    return (np.clip(image, 0, 1) * 255).round().astype(np.uint8)


def render_batch(world: World, nouns: Sequence[str], sizes: Sequence[str], rng: np.random.Generator) -> np.ndarray:
    """``(N, H, W, 3)`` uint8 images of ``nouns`` at ``sizes``."""
    return np.stack([world.render_array(n, rng, s) for n, s in zip(nouns, sizes, strict=True)])
