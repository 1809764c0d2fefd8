"""Prompt pieces, learned slots and the padding policy: text in, :class:`TokenizedPrompts` out.

CLIP's text tower pools the row at the EOS token, whose index comes from the token ids, so learned vectors must
*replace* placeholder slots (inserting would move EOS). A prompt is therefore assembled from token pieces
(``[SOS] prefix name suffix [EOS]``; no ``[SOS]`` when the tokenizer has no BOS token, as SigLIP's) and the positions
of its slots are recorded. The padding policy is the backbone's (``peft_dor.prompting.backbone``): CLIP's attention is
causal, so rows after EOS never reach the pooled row and prompts are padded to the longest prompt of the batch instead
of CLIP's 77; SigLIP's is not, so its prompts are padded to the fixed length it was pre-trained with.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

CLASS_TOKEN_POSITIONS = ("end", "middle", "front")


def prompt_name(name: str) -> str:
    """A class name as it appears in the prompt text: ``_`` becomes a space (``"sea_lion"`` -> ``"sea lion"``), as in
    every official prompt learner, so names written as folder names give the same prompts as there."""
    return name.replace("_", " ")


def phrase_words(phrase: str) -> int:
    """The number of words of a ``ctx_init`` phrase (``_`` counts as a space): the official code's ``n_ctx`` when a
    phrase is given and ``n_ctx`` is not."""
    return len(phrase.replace("_", " ").split())


@dataclass(frozen=True)
class PromptLayout:
    """Where learned context vectors sit in a prompt.

    The prompt is ``[SOS] <prefix tokens> <name tokens> <suffix tokens> [EOS]`` (for ``class_token_position="end"``);
    the first ``n_ctx`` prefix tokens are the learnable slots, the remaining prefix tokens stay fixed words (the
    MaPLe/IVLP quirk where only "a photo" of "a photo of a" is learned).

    Args:
        prefix: the words whose token slots carry the context: an init phrase such as ``"a photo of a"`` or
            ``n_ctx`` placeholder words ``"X X X X"``.
        n_ctx: how many of the prefix's tokens are learned slots (the first ``n_ctx``).
        class_token_position: ``"end"``, ``"middle"`` or ``"front"`` (CoOp's options).
        suffix: text after the class name, ``"."`` in every official method.
    """

    prefix: str
    n_ctx: int
    class_token_position: str = "end"
    suffix: str = "."


@dataclass
class TokenizedPrompts:
    """A batch of prompts as token ids padded to the longest prompt of the batch (or to a fixed length).

    Attributes:
        input_ids: ``(P, L)`` token ids, ``L`` the longest prompt (not the tower's 77), or the fixed length.
        eos_index: ``(P,)`` position of the EOS token in each row.
        slot_index: ``(P, n_ctx)`` positions of the learned context slots, or ``None`` for plain templates.
        fixed_length: whether ``L`` is a fixed length that row selections keep (backbones without causal attention).
    """

    input_ids: torch.LongTensor
    eos_index: torch.LongTensor
    slot_index: torch.LongTensor | None = None
    fixed_length: bool = False

    def __len__(self) -> int:
        return self.input_ids.shape[0]

    def to(self, device: torch.device | str) -> TokenizedPrompts:
        move = lambda t: None if t is None else t.to(device)  # noqa: E731
        return TokenizedPrompts(
            move(self.input_ids), move(self.eos_index), move(self.slot_index), fixed_length=self.fixed_length
        )

    def _length(self, eos: torch.LongTensor) -> int:
        if self.fixed_length:
            return self.input_ids.shape[1]
        return int(eos.max().item()) + 1 if len(eos) else 1

    def select(self, rows: slice) -> TokenizedPrompts:
        """Rows ``rows`` of the batch, re-padded to their own longest prompt (a fixed length is kept)."""
        eos = self.eos_index[rows]
        slots = None if self.slot_index is None else self.slot_index[rows]
        return TokenizedPrompts(self.input_ids[rows, : self._length(eos)], eos, slots, self.fixed_length)

    def select_rows(self, index: torch.LongTensor) -> TokenizedPrompts:
        """The rows at ``index`` (e.g. prompts of similar length), re-padded to their own longest prompt (a fixed
        length is kept)."""
        eos = self.eos_index[index]
        slots = None if self.slot_index is None else self.slot_index[index]
        return TokenizedPrompts(self.input_ids[index, : self._length(eos)], eos, slots, self.fixed_length)


class PromptTokenizer:
    """Builds :class:`TokenizedPrompts` with the backbone's tokenizer, caching the token ids of every text it has seen.

    Token ids are assembled piece by piece (``[SOS] + prefix + name + suffix + [EOS]``, without ``[SOS]`` when the
    tokenizer has no BOS token). CLIP's BPE pre-tokenizer and SigLIP's SentencePiece model split on whitespace (and
    SigLIP's drops punctuation), so for ordinary names this equals tokenising the joined string (tested), while
    letting us know exactly where each slot is. (A name ending in punctuation can merge differently with the suffix
    than in the joined string; the prompt is still well-formed, with EOS last.)

    Args:
        tokenizer: the base model's tokenizer (``CLIPTokenizer`` or its fast variant, ``SiglipTokenizer``).
        context_length: the text tower's ``max_position_embeddings`` (77 for OpenAI CLIP, 64 for SigLIP).
        fixed_length: pad every prompt to this many tokens with the pad id (the backbone's
            :class:`~peft_dor.prompting.backbone.TextRules`); None pads to the longest prompt of the batch.
        backbone_name: the backbone's display name, for error messages.
    """

    def __init__(self, tokenizer, context_length: int, fixed_length: int | None = None, backbone_name: str = "CLIP"):
        self.tokenizer = tokenizer
        self.backbone_name = backbone_name
        self.context_length = context_length
        self.fixed_length = fixed_length
        self.bos_id = tokenizer.bos_token_id
        self.eos_id = tokenizer.eos_token_id
        if self.eos_id is None:
            raise ValueError(
                f"The tokenizer {type(tokenizer).__name__} has no EOS token; prompts end with it. Load the base "
                "model's own tokenizer (tokenizer_name_or_path)."
            )
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        #: the special tokens before the text: ``[SOS]``, or nothing for tokenizers without BOS (SigLIP)
        self.lead = [] if self.bos_id is None else [self.bos_id]
        self._pieces: dict[str, list[int]] = {}

    def piece_ids(self, text: str) -> list[int]:
        """Token ids of ``text`` without special tokens (cached)."""
        ids = self._pieces.get(text)
        if ids is None:
            ids = list(self.tokenizer(text, add_special_tokens=False)["input_ids"]) if text.strip() else []
            self._pieces[text] = ids
        return ids

    def prefetch(self, texts: Sequence[str], block: int = 8192) -> None:
        """Tokenise the texts not seen yet in batched tokenizer calls (far faster than one call per text for the
        10^5 terms of a DOR vocabulary); the ids are the ones :meth:`piece_ids` gives."""
        missing = [text for text in dict.fromkeys(texts) if text not in self._pieces and text.strip()]
        for start in range(0, len(missing), block):
            chunk = missing[start : start + block]
            for text, ids in zip(chunk, self.tokenizer(chunk, add_special_tokens=False)["input_ids"], strict=True):
                self._pieces[text] = list(ids)

    def fits(self, names: Sequence[str], template: str) -> list[bool]:
        """Whether each ``template.format(name)`` prompt fits the text tower (DOR skips vocabulary terms that do not)."""
        texts = [template.format(prompt_name(name)) for name in names]
        self.prefetch(texts)
        return [len(self.lead) + len(self.piece_ids(text)) + 1 <= self.context_length for text in texts]

    def _check_plain(self, ids: list[int], text: str) -> None:
        # CLIP's tokenizer turns "<|endoftext|>" typed in a name into the real special token: a second EOS mid-prompt.
        if self.eos_id in ids or (self.bos_id is not None and self.bos_id in ids):
            specials = [t for t in (self.tokenizer.bos_token, self.tokenizer.eos_token) if t is not None]
            raise ValueError(
                f"{text!r} contains the text of {self.backbone_name}'s special tokens "
                f"({' or '.join(map(repr, specials))}), which the tokenizer would turn into real start/end tokens "
                "inside the prompt. Remove them from the class name or template."
            )

    def _check_length(self, n_tokens: int, text: str, hint: str) -> None:
        if n_tokens > self.context_length:
            raise ValueError(
                f"The prompt {text!r} is {n_tokens} tokens long but the text tower takes at most "
                f"{self.context_length}. {hint}"
            )

    def template_prompts(self, names: Sequence[str], template: str) -> TokenizedPrompts:
        """Hand-crafted prompts ``template.format(name)``, e.g. ``"a photo of a {}."`` (``_`` in names as spaces)."""
        rows = []
        texts = [template.format(prompt_name(name)) for name in names]
        self.prefetch(texts)
        for text in texts:
            pieces = self.piece_ids(text)
            self._check_plain(pieces, text)
            ids = [*self.lead, *pieces, self.eos_id]
            self._check_length(len(ids), text, "Use a shorter class name or template.")
            rows.append(ids)
        return self.pad(rows)

    def layout_prompts(self, names: Sequence[str], layout: PromptLayout) -> TokenizedPrompts:
        """Prompts with learnable context slots, laid out as ``layout`` says (``_`` in names as spaces)."""
        prefix = self.piece_ids(layout.prefix)
        if layout.n_ctx > len(prefix):
            raise ValueError(
                f"n_ctx={layout.n_ctx} but the context phrase {layout.prefix!r} has only {len(prefix)} tokens; "
                "use a longer ctx_init or a smaller n_ctx."
            )
        suffix = self.piece_ids(layout.suffix)
        self._check_plain(prefix + suffix, f"{layout.prefix} {{}}{layout.suffix}")
        rows, slots = [], []
        for name in names:
            name_ids = self.piece_ids(prompt_name(name))
            self._check_plain(name_ids, name)
            lead = len(self.lead)
            if layout.class_token_position == "end":
                pieces = [prefix, name_ids]
                prefix_start = lead
            elif layout.class_token_position == "front":
                pieces = [name_ids, prefix]
                prefix_start = lead + len(name_ids)
            else:  # middle: the class name splits the learned context in two halves (CoOp)
                half = layout.n_ctx // 2
                pieces = [prefix[:half], name_ids, prefix[half:]]
                prefix_start = None
            ids = [*self.lead, *[i for piece in pieces for i in piece], *suffix, self.eos_id]
            if prefix_start is None:
                half = layout.n_ctx // 2
                positions = list(range(lead, lead + half)) + list(
                    range(lead + half + len(name_ids), lead + len(name_ids) + layout.n_ctx)
                )
            else:
                positions = list(range(prefix_start, prefix_start + layout.n_ctx))
            self._check_length(
                len(ids), f"{layout.prefix} {name}{layout.suffix}", "Use a shorter class name or fewer context tokens."
            )
            rows.append(ids)
            slots.append(positions)
        prompts = self.pad(rows)
        prompts.slot_index = torch.tensor(slots, dtype=torch.long).reshape(len(rows), layout.n_ctx)
        return prompts

    def pad(self, rows: Sequence[Sequence[int]]) -> TokenizedPrompts:
        """Token-id rows (each ``[SOS] .. [EOS]``) as one batch padded to its longest row, or to ``fixed_length``."""
        # Pad to the longest prompt of this batch, not to the tower's context length: with a causal mask and EOS
        # pooling the padded positions never reach the pooled row, so the features are identical (tested). Without
        # causal attention every pad changes the features, so the backbone's fixed length is kept.
        length = self.fixed_length or max((len(r) for r in rows), default=1)
        ids = torch.full((len(rows), length), self.pad_id, dtype=torch.long)
        for i, row in enumerate(rows):
            ids[i, : len(row)] = torch.tensor(row, dtype=torch.long)
        eos = torch.tensor([len(r) - 1 for r in rows], dtype=torch.long)
        return TokenizedPrompts(ids, eos, fixed_length=self.fixed_length is not None)
