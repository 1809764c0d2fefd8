"""Outlier vocabularies: WordNet 3.0 nouns through nltk (offline-capable) and custom term lists.

DOR draws its outliers from a large vocabulary of words that are *not* the training classes. The default is WordNet
3.0's 117,798 noun lemma names, read with nltk's ``WordNetCorpusReader`` from one of two places:

1. nltk's usual data path, after ``python -c "import nltk; nltk.download('wordnet')"``;
2. Debian/Ubuntu's ``wordnet-base`` and ``wordnet-sense-index`` packages (``/usr/share/wordnet``). nltk 3.10 refuses
   roots outside its data path, symlinked files and a corpus without ``lexnames``, so the files are *copied* into
   ``<cache>/nltk_data/corpora/wordnet`` and ``lexnames`` is written there before the corpus is opened.

Opening WordNet with nltk takes seconds, so the extracted noun list is cached next to the copied corpus.

Any other vocabulary (a list of strings, or a text file with one term per line) works the same way, which is how a
domain vocabulary (medical terms, species names, ...) replaces WordNet.

Example:
    ```python
    from peft_dor.dor import load_vocabulary, wordnet_nouns

    nouns = wordnet_nouns()  # ['0', '1', ..., 'golden retriever', ...]
    terms = load_vocabulary(["melanoma", "basal cell carcinoma"])
    ```
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path

from ..cache import cache_root

#: Default places where Debian-style WordNet database files live (``$WNSEARCHDIR`` is checked first).
WORDNET_SEARCH_DIRS = ("/usr/share/wordnet", "/usr/local/share/wordnet", "/usr/local/WordNet-3.0/dict")

# The lexnames(5WN) table that neither Debian package ships: number, name, syntactic category (1 noun .. 4 adverb).
_NOUN_FILES = [
    "Tops",
    "act",
    "animal",
    "artifact",
    "attribute",
    "body",
    "cognition",
    "communication",
    "event",
    "feeling",
    "food",
    "group",
    "location",
    "motive",
    "object",
    "person",
    "phenomenon",
    "plant",
    "possession",
    "process",
    "quantity",
    "relation",
    "shape",
    "state",
    "substance",
    "time",
]
_VERB_FILES = [
    "body",
    "change",
    "cognition",
    "communication",
    "competition",
    "consumption",
    "contact",
    "creation",
    "emotion",
    "motion",
    "perception",
    "possession",
    "social",
    "stative",
    "weather",
]
LEXNAMES = (
    [("adj.all", 3), ("adj.pert", 3), ("adv.all", 4)]
    + [(f"noun.{name}", 1) for name in _NOUN_FILES]
    + [(f"verb.{name}", 2) for name in _VERB_FILES]
    + [("adj.ppl", 3)]
)

# Files the nltk reader opens; ``index.sense`` is optional (wordnet-sense-index), the rest come with wordnet-base.
_REQUIRED_FILES = ("index.noun", "data.noun", "index.verb", "index.adj", "index.adv", "data.adj", "noun.exc")
_NOUN_LIST_VERSION = 1
_memo: dict[str, list[str]] = {}
_own_roots: set[Path] = set()  # nltk_data folders that hold copies made by install_wordnet_copy

_MISSING_WORDNET = (
    "WordNet 3.0 was not found. Get it in one of two ways:\n"
    "  1. with nltk (needs network once): python -c \"import nltk; nltk.download('wordnet')\"\n"
    "  2. from Debian/Ubuntu packages: apt-get install -y --no-install-recommends wordnet-base wordnet-sense-index\n"
    "     (files in /usr/share/wordnet; another folder can be named with $WNSEARCHDIR).\n"
    "Or pass your own vocabulary: DORConfig(vocabulary=['term', ...]) or a text file with one term per line."
)


#: ``$PEFT_DOR_CACHE`` or ``~/.cache/peft_dor``: where WordNet copies and DOR feature caches go (the package's one
#: cache root, :func:`peft_dor.cache.cache_root`)
default_cache_dir = cache_root


def normalize_term(term: str) -> str:
    """A vocabulary entry as it goes into a prompt: ``_`` to a space, whitespace collapsed (``golden_retriever`` ->
    ``golden retriever``)."""
    return " ".join(term.replace("_", " ").split())


def term_key(term: str) -> str:
    """Case- and separator-insensitive comparison key (``Golden-Retriever`` == ``golden_retriever``)."""
    return " ".join(re.sub(r"[\s_\-]+", " ", term.casefold()).split())


def clean_terms(terms: Iterable[str]) -> list[str]:
    """Normalise terms and drop empty entries and duplicates (case- and separator-insensitive, first one kept)."""
    seen: set[str] = set()
    cleaned = []
    for term in terms:
        if not isinstance(term, str):
            raise TypeError(f"Vocabulary terms must be strings; got {term!r} ({type(term).__name__}).")
        text = normalize_term(term)
        key = term_key(text)
        if text and key not in seen:
            seen.add(key)
            cleaned.append(text)
    return cleaned


def vocabulary_hash(terms: Sequence[str]) -> str:
    """A stable fingerprint of a term list (part of the DOR feature cache key)."""
    return hashlib.sha256("\n".join(terms).encode("utf-8")).hexdigest()


# ---------------------------------------------------------------------------------------------------------------- nltk
def wordnet_available(search_dirs: Sequence[str | os.PathLike] | None = None) -> bool:
    """Whether :func:`wordnet_nouns` can find WordNet: nltk's corpus (``nltk.download('wordnet')``) or the Debian
    files (``apt-get install wordnet-base wordnet-sense-index``), without reading either."""
    return _nltk_wordnet_path() is not None or find_wordnet_dir(search_dirs) is not None


def _nltk_wordnet_path() -> Path | None:
    """Where nltk's own ``wordnet`` corpus is (``nltk.download('wordnet')``: a folder or a zip), else ``None``."""
    import nltk

    try:
        pointer = nltk.data.find("corpora/wordnet")
    except LookupError:
        return None
    path = Path(pointer.zipfile.filename) if hasattr(pointer, "zipfile") else Path(pointer.path)
    # A copy this module made from the Debian files is found here too once its root is on nltk's path; it is opened
    # with the lighter reader below instead.
    if any(root in path.parents for root in _own_roots):
        return None
    return path


def find_wordnet_dir(search_dirs: Sequence[str | os.PathLike] | None = None) -> Path | None:
    """The first folder holding Debian-style WordNet database files.

    Args:
        search_dirs: folders to look in; default ``$WNSEARCHDIR`` then :data:`WORDNET_SEARCH_DIRS`.
    """
    candidates = [os.environ.get("WNSEARCHDIR"), *WORDNET_SEARCH_DIRS] if search_dirs is None else list(search_dirs)
    for folder in candidates:
        if folder and all((Path(folder) / name).is_file() for name in _REQUIRED_FILES):
            return Path(folder)
    return None


def install_wordnet_copy(source: str | os.PathLike, cache_dir: str | os.PathLike | None = None) -> Path:
    """Copy a WordNet database folder into ``<cache>/nltk_data/corpora/wordnet`` and write ``lexnames`` there.

    nltk 3.10 rejects symlinked files ("Path ... escapes root"), so the files are copied, never linked. Files already
    copied with the same size are kept. ``<cache>/nltk_data`` is appended to ``nltk.data.path`` so nltk's security
    check accepts the folder.

    Args:
        source: folder with ``index.noun``, ``data.noun``, ... (e.g. ``/usr/share/wordnet``).
        cache_dir: cache root; defaults to :func:`default_cache_dir`.

    Returns:
        The corpus folder (``.../nltk_data/corpora/wordnet``).
    """
    import nltk

    source = Path(source)
    data_root = Path(cache_dir or default_cache_dir()) / "nltk_data"
    corpus = data_root / "corpora" / "wordnet"
    corpus.mkdir(parents=True, exist_ok=True)
    for path in sorted(source.iterdir()):
        if not path.is_file():
            continue
        target = corpus / path.name
        if target.is_symlink():
            target.unlink()
        if not target.exists() or target.stat().st_size != path.stat().st_size:
            shutil.copyfile(path, target)  # copies the content even when `path` itself is a symlink
    lexnames = "".join(f"{i:02d}\t{name}\t{category}\n" for i, (name, category) in enumerate(LEXNAMES))
    lexnames_path = corpus / "lexnames"
    if not lexnames_path.exists() or lexnames_path.read_text() != lexnames:
        lexnames_path.write_text(lexnames)
    _own_roots.add(data_root)
    if str(data_root) not in nltk.data.path:
        nltk.data.path.append(str(data_root))
    return corpus


def open_wordnet_copy(corpus: str | os.PathLike):
    """Open a copied WordNet folder with nltk's ``WordNetCorpusReader``.

    The reader's constructor builds a WordNet-version map from ``index.sense``, which only the multilingual (OMW) data
    needs; the subclass skips it, so ``wordnet-sense-index`` is optional and the corpus opens faster.
    """
    from nltk.corpus.reader.wordnet import WordNetCorpusReader

    class _EnglishWordNetReader(WordNetCorpusReader):
        def map_wn(self, version="wordnet"):
            return None

    with warnings.catch_warnings():
        # "The multilingual functions are not available with this Wordnet version": expected without OMW.
        warnings.simplefilter("ignore", UserWarning)
        return _EnglishWordNetReader(str(corpus), None)


def _noun_lemmas(reader) -> list[str]:
    return sorted({normalize_term(name) for name in reader.all_lemma_names("n")})


def _source_stamp(path: Path) -> str:
    stat = path.stat()
    return f"{path.resolve()}:{stat.st_size}:{int(stat.st_mtime)}"


def wordnet_nouns(
    cache_dir: str | os.PathLike | None = None, search_dirs: Sequence[str | os.PathLike] | None = None
) -> list[str]:
    """WordNet 3.0's noun lemma names, ``_`` replaced by a space, de-duplicated and sorted (117,798 terms).

    Looks for nltk's ``wordnet`` corpus on nltk's data path first, then for Debian's ``wordnet-base`` files
    (``$WNSEARCHDIR``, ``/usr/share/wordnet``), which are copied into the cache folder for nltk. The list is cached
    on disk next to the copy, so only the first call pays for opening the corpus (seconds).

    Args:
        cache_dir: cache root; defaults to ``$PEFT_DOR_CACHE`` or ``~/.cache/peft_dor``.
        search_dirs: folders with Debian-style WordNet files to try after nltk's data path; default
            ``$WNSEARCHDIR``, ``/usr/share/wordnet``, ``/usr/local/share/wordnet``.

    Raises:
        LookupError: no WordNet was found; the message names the two ways to get it.

    Example:
        ```python
        from peft_dor.dor import wordnet_nouns

        nouns = wordnet_nouns()
        len(nouns)  # 117798
        ```
    """
    cache_root = Path(cache_dir or default_cache_dir())
    nltk_path = _nltk_wordnet_path()
    source_dir = None if nltk_path is not None else find_wordnet_dir(search_dirs)
    if nltk_path is None and source_dir is None:
        raise LookupError(_MISSING_WORDNET)
    stamp = _source_stamp(nltk_path if nltk_path is not None else source_dir / "index.noun")
    key = hashlib.sha256(f"{_NOUN_LIST_VERSION}|{stamp}".encode()).hexdigest()[:16]
    cache_file = cache_root / "wordnet" / f"noun-lemmas-{key}.json"
    if str(cache_file) in _memo:
        return list(_memo[str(cache_file)])
    if cache_file.is_file():
        nouns = json.loads(cache_file.read_text())
    else:
        if nltk_path is not None:
            from nltk.corpus import wordnet as reader
        else:
            reader = open_wordnet_copy(install_wordnet_copy(source_dir, cache_root))
        nouns = _noun_lemmas(reader)
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache_file.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(json.dumps(nouns))
        os.replace(tmp, cache_file)  # atomic, so concurrent ranks never read a half-written list
    _memo[str(cache_file)] = nouns
    return list(nouns)


# ------------------------------------------------------------------------------------------------- custom vocabularies
def read_vocabulary_file(path: str | os.PathLike) -> list[str]:
    """Terms from a UTF-8 text file, one per line; blank lines and lines starting with ``#`` are skipped."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise ValueError(
            f"The `vocabulary` file {os.fspath(path)!r} cannot be read as UTF-8 text ({error}); give a readable UTF-8 "
            "file with one term per line."
        ) from error
    return clean_terms(line for line in lines if line.strip() and not line.lstrip().startswith("#"))


def load_vocabulary(vocabulary: str | os.PathLike | Sequence[str] = "wordnet", cache_dir=None) -> list[str]:
    """Resolve a vocabulary specification to a clean list of terms.

    Args:
        vocabulary: ``"wordnet"`` (WordNet 3.0 nouns, :func:`wordnet_nouns`), a path to a text file with one term per
            line, or a list of terms.
        cache_dir: cache root for the WordNet copy.

    Returns:
        Terms with ``_`` replaced by spaces, without empty entries or (case- and separator-insensitive) duplicates.

    Example:
        ```python
        load_vocabulary(["Golden_Retriever", "golden retriever", "tabby cat"])  # ['Golden Retriever', 'tabby cat']
        ```
    """
    if isinstance(vocabulary, (str, os.PathLike)):
        if str(vocabulary).lower() == "wordnet":
            return wordnet_nouns(cache_dir)
        if not Path(vocabulary).is_file():
            raise ValueError(
                f"`vocabulary` must be 'wordnet', a list of terms or a text file with one term per line; "
                f"{str(vocabulary)!r} is not a file."
            )
        terms = read_vocabulary_file(vocabulary)
    else:
        terms = clean_terms(vocabulary)
    if not terms:
        raise ValueError("The outlier vocabulary is empty; give at least a few terms that are not class names.")
    return terms
