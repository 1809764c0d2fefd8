"""A CLIP byte-level BPE vocabulary in which chosen words are exactly one token each.

CLIP's BPE applies merges by rank (lowest first), not in the order a word's letters appear. Writing each word's merges
left to right is therefore not enough: a merge written for an earlier word can win inside a later one ("at" before
"cat" leaves "cat" as ``c`` + ``at</w>``). :func:`single_token_vocabulary` runs the same BPE on every word with the
merges written so far and, where a word still splits, appends the merges that join its current pieces. A merge appended
last can only fire where no earlier merge applies, so it never changes a word that is already one token.

Example:
    ```python
    from peft_dor.world.tokenizer import build_single_token_tokenizer

    tokenizer = build_single_token_tokenizer(["at", "cat"])
    tokenizer("cat", add_special_tokens=False)["input_ids"]  # one id
    ```
"""

from __future__ import annotations

from collections.abc import Sequence

SPECIAL_TOKENS = ("<|startoftext|>", "<|endoftext|>")


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP's reversible byte -> printable-unicode table (every byte gets a visible character)."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    printable += list(range(ord("®"), ord("ÿ") + 1))
    chars = printable[:]
    extra = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            chars.append(256 + extra)
            extra += 1
    return dict(zip(printable, (chr(c) for c in chars), strict=True))


def _word_symbols(word: str) -> list[str]:
    table = bytes_to_unicode()
    symbols = [table[b] for b in word.encode("utf-8")]
    return symbols[:-1] + [symbols[-1] + "</w>"]


def bpe_pieces(word: str, ranks: dict[tuple[str, str], int]) -> list[str]:
    """The pieces CLIP's BPE makes of one lower-case ``word`` with merge ``ranks`` (the lowest rank merges first)."""
    parts = _word_symbols(word)
    while len(parts) > 1:
        pairs = [(ranks.get(pair), i) for i, pair in enumerate(zip(parts[:-1], parts[1:], strict=True))]
        pairs = [(rank, i) for rank, i in pairs if rank is not None]
        if not pairs:
            break
        best = min(pairs)[0]
        first, second = next((parts[i], parts[i + 1]) for rank, i in pairs if rank == best)
        merged, i = [], 0
        while i < len(parts):
            if i < len(parts) - 1 and parts[i] == first and parts[i + 1] == second:
                merged.append(first + second)
                i += 2
            else:
                merged.append(parts[i])
                i += 1
        parts = merged
    return parts


def single_token_vocabulary(words: Sequence[str]) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """Vocabulary and merges: every byte (alone and word-final), then merges that make each of ``words`` one token.

    Words must be lower case and contain no whitespace (CLIP's tokenizer lower-cases and splits on spaces). Merges are
    written word by word, left to right; a word that BPE still splits (because an earlier merge wins inside it) gets
    the merges that join its remaining pieces appended. Ids of earlier tokens never change when words are added.
    """
    for word in words:
        if not word or word != word.lower() or any(c.isspace() for c in word):
            raise ValueError(f"`words` must be non-empty lower-case words without spaces; got {word!r}.")
    symbols = list(bytes_to_unicode().values())
    vocab: dict[str, int] = {}
    for token in symbols + [s + "</w>" for s in symbols]:
        vocab.setdefault(token, len(vocab))
    merges: list[tuple[str, str]] = []
    ranks: dict[tuple[str, str], int] = {}

    def add_merges(parts: list[str]) -> None:
        while len(parts) > 1:
            pair = (parts[0], parts[1])
            if pair not in ranks:
                ranks[pair] = len(merges)
                merges.append(pair)
                vocab.setdefault(pair[0] + pair[1], len(vocab))
            parts = [parts[0] + parts[1], *parts[2:]]

    for word in words:
        add_merges(_word_symbols(word))
    for word in words:
        pieces = bpe_pieces(word, ranks)
        if len(pieces) > 1:
            add_merges(pieces)
    for special in SPECIAL_TOKENS:
        vocab[special] = len(vocab)
    return vocab, merges


def multi_token_words(tokenizer, words: Sequence[str]) -> dict[str, list[int]]:
    """The words of ``words`` that ``tokenizer`` does not encode as exactly one id, with their ids."""
    ids = tokenizer(list(words), add_special_tokens=False)["input_ids"]
    return {word: row for word, row in zip(words, ids, strict=True) if len(row) != 1}


def build_single_token_tokenizer(words: Sequence[str]):
    """A real ``CLIPTokenizer`` in which every word of ``words`` is one token (checked with the tokenizer itself)."""
    from transformers import CLIPTokenizer

    vocab, merges = single_token_vocabulary(words)
    tokenizer = CLIPTokenizer(vocab=vocab, merges=merges)
    broken = multi_token_words(tokenizer, words)
    if broken:  # pragma: no cover - a bug in single_token_vocabulary, never the user's
        raise RuntimeError(f"These words are not one token: {sorted(broken)}.")
    return tokenizer
