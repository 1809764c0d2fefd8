"""Property-based tests of prompt building: any Unicode class names (empty after stripping, very long, emoji,
right-to-left scripts, combining marks, control and zero-width characters) either give well-formed prompts or raise the
documented ``ValueError``, never anything else.

Well-formed: ``[SOS]`` first and ``[EOS]`` last with only padding after it, at most the text tower's 77 positions, the
learned slots distinct, inside the prompt and holding the placeholder tokens, and (through ``set_class_names``) every
class has tokens of its own and a prompt no other class shares.
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from peft_dor.prompting import PromptLayout, TokenizedPrompts
from peft_dor.prompting.tokenizer import prompt_name

from ._cases import CLASS_NAMES, build_model

#: Unicode without lone surrogates (not encodable, so no tokenizer input)
ANY_CHARACTER = st.characters(exclude_categories=("Cs",))
SAMPLES = [
    "",
    "   ",
    "\t\n",
    "\u200b",  # zero-width space: not whitespace for str.strip
    "\u3000",  # ideographic space: whitespace
    "🐈‍⬛ black cat",  # emoji with a zero-width joiner
    "שלום",  # right to left
    "\u202eevil",  # right-to-left override
    "cafe\u0301",  # combining acute accent
    "\u0301",  # a lone combining mark
    "ﬁsh",  # a ligature NFKC would split
    "x\x00y",  # a control character
    "{} {0} {name}",  # format fields must never be interpreted
    "<|endoftext|>",  # CLIP's special tokens, typed as text
    "dog <|startoftext|> cat",
    "a" * 300,
    " ".join(["dog"] * 75),
]
NAME = st.one_of(
    st.sampled_from(SAMPLES),
    st.text(ANY_CHARACTER, max_size=12),
    st.text(ANY_CHARACTER, min_size=60, max_size=200),
    st.text(st.sampled_from("ab c.!-'🐶é\u0301"), max_size=20),
)
NAMES = st.lists(NAME, min_size=1, max_size=5)
PROPERTY_SETTINGS = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(scope="module")
def coop(tiny_clip_path):
    return build_model("coop", tiny_clip_path)


def assert_well_formed(prompts: TokenizedPrompts, tokenizer, n_ctx: int | None = None, placeholder=None) -> None:
    ids, eos = prompts.input_ids, prompts.eos_index
    assert ids.shape[1] <= tokenizer.context_length
    assert bool((ids[:, 0] == tokenizer.bos_id).all())
    rows = torch.arange(len(ids))
    assert bool((ids[rows, eos] == tokenizer.eos_id).all())
    after_eos = torch.arange(ids.shape[1])[None] > eos[:, None]
    assert bool((ids[after_eos] == tokenizer.pad_id).all())
    # EOS is the only end-of-text token before the padding (CLIP pools the first EOS row it is told about)
    assert bool(((ids == tokenizer.eos_id) & ~after_eos).sum(dim=1).eq(1).all())
    if n_ctx is not None:
        slots = prompts.slot_index
        assert slots.shape == (len(ids), n_ctx)
        for row, positions in enumerate(slots.tolist()):
            assert len(set(positions)) == n_ctx
            assert all(0 < p < int(eos[row]) for p in positions)
            assert all(int(ids[row, p]) == placeholder for p in positions)


@PROPERTY_SETTINGS
@given(names=NAMES, position=st.sampled_from(["end", "middle", "front"]), n_ctx=st.integers(1, 16))
def test_layout_prompts_are_well_formed_or_too_long(coop, names, position, n_ctx):
    tokenizer = coop.get_base_model().prompt_tokenizer
    layout = PromptLayout(prefix=" ".join(["X"] * n_ctx), n_ctx=n_ctx, class_token_position=position)
    try:
        prompts = tokenizer.layout_prompts(names, layout)
    except ValueError as error:
        assert "the text tower takes at most 77" in str(error) or "CLIP's special tokens" in str(error)
        return  # the documented outcome for this input
    (placeholder,) = tokenizer.piece_ids("X")
    assert_well_formed(prompts, tokenizer, n_ctx, placeholder)


@PROPERTY_SETTINGS
@given(names=NAMES, template=st.sampled_from(["a photo of a {}.", "{}", "itap of the {}!", "{} 🐾 ?"]))
@example(names=["_"], template="a photo of a {}.")  # found by this test: "_" alone is an empty name in the prompt
@example(names=["sea_lion"], template="a photo of a {}.")
def test_template_prompts_are_well_formed_or_too_long(coop, names, template):
    tokenizer = coop.get_base_model().prompt_tokenizer
    try:
        prompts = tokenizer.template_prompts(names, template)
    except ValueError as error:
        assert "the text tower takes at most 77" in str(error) or "CLIP's special tokens" in str(error)
        return  # the documented outcome for this input
    assert_well_formed(prompts, tokenizer)
    # the ids are those of the whole formatted sentence, as CLIP's tokenizer gives them
    for row, name in enumerate(names):
        expected = tokenizer.tokenizer(template.format(prompt_name(name)))["input_ids"]  # "_" is a space in prompts
        assert prompts.input_ids[row, : len(expected)].tolist() == expected


@PROPERTY_SETTINGS
@given(names=NAMES)
def test_set_class_names_accepts_only_names_that_give_distinct_prompts(coop, names):
    wrapper = coop.get_base_model()
    wrapper.set_class_names(CLASS_NAMES)
    try:
        coop.set_class_names(names)
    except ValueError as error:
        message = str(error)
        assert wrapper.class_names == CLASS_NAMES  # a rejected list changes nothing
        assert any(
            documented in message
            for documented in (
                "`class_names` must hold non-empty strings",
                "`class_names` holds duplicates",
                "has no tokens for CLIP's tokenizer",
                "the text tower takes at most 77",
                "contains the text of CLIP's special tokens",
            )
        ), message
        return  # the documented outcome for this input
    assert wrapper.class_names == list(names)
    tokenizer = wrapper.prompt_tokenizer
    prompts = wrapper.tokenize(names)
    (placeholder,) = tokenizer.piece_ids("X")
    assert_well_formed(prompts, tokenizer, 4, placeholder)
    assert all(tokenizer.piece_ids(name) for name in names)
    rows = {tuple(prompts.input_ids[i, : int(prompts.eos_index[i]) + 1].tolist()) for i in range(len(names))}
    assert len(rows) == len(names)


def test_accepted_unicode_names_classify_with_finite_logits(coop, pixel_values):
    names = ["🐈‍⬛ black cat", "שלום", "cafe\u0301 au lait", "\u200b", "x\x00y"]
    coop.set_class_names(names)
    try:
        logits = coop(pixel_values=pixel_values).logits
    finally:
        coop.set_class_names(CLASS_NAMES)
    assert logits.shape == (4, len(names)) and bool(torch.isfinite(logits).all())


def test_a_name_of_only_underscores_is_refused(coop):
    wrapper = coop.get_base_model()
    wrapper.set_class_names(CLASS_NAMES)
    with pytest.raises(ValueError, match=r"non-empty strings; got '__'.*underscore is a space"):
        coop.set_class_names(["cat", "__"])
    assert wrapper.class_names == CLASS_NAMES
