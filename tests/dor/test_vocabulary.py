"""WordNet through nltk (Debian files copied into a cache folder) and custom vocabularies."""

from __future__ import annotations

import os

import pytest

from peft_dor.dor import clean_terms, load_vocabulary, term_key, wordnet_nouns
from peft_dor.dor import vocabulary as vocab


def test_wordnet_nouns_from_debian_packages_count_117798(tmp_path):
    # CI installs wordnet-base and wordnet-sense-index, so this must run there, never skip.
    source = vocab.find_wordnet_dir()
    assert source is not None, "WordNet files not found: apt-get install wordnet-base wordnet-sense-index"
    nouns = wordnet_nouns(cache_dir=tmp_path)
    assert len(nouns) == 117_798
    assert len(set(nouns)) == len(nouns)
    assert "golden retriever" in nouns and "dog" in nouns
    assert not any("_" in noun for noun in nouns)
    corpus = tmp_path / "nltk_data" / "corpora" / "wordnet"
    if vocab._nltk_wordnet_path() is None:  # read from the Debian copy: check the copy itself
        for name in ("index.noun", "data.noun", "lexnames"):
            assert (corpus / name).is_file() and not (corpus / name).is_symlink()
        lexnames = (corpus / "lexnames").read_text().splitlines()
        assert len(lexnames) == 45
        assert lexnames[3] == "03\tnoun.Tops\t1" and lexnames[44] == "44\tadj.ppl\t3"
    # The second call reads the cached list (same content) without reopening the corpus.
    vocab._memo.clear()
    assert wordnet_nouns(cache_dir=tmp_path) == nouns


def test_install_copy_replaces_symlinks_with_files(tmp_path):
    source = tmp_path / "src"
    source.mkdir()
    real = tmp_path / "real.noun"
    real.write_text("content\n")
    (source / "index.noun").symlink_to(real)
    corpus = vocab.install_wordnet_copy(source, tmp_path / "cache")
    copied = corpus / "index.noun"
    assert copied.is_file() and not copied.is_symlink()
    assert copied.read_text() == "content\n"
    assert len((corpus / "lexnames").read_text().splitlines()) == 45


def test_missing_wordnet_error_names_both_ways(tmp_path):
    if vocab._nltk_wordnet_path() is not None:
        pytest.skip("nltk's own wordnet corpus is installed, so it is always found")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(LookupError) as error:
        wordnet_nouns(cache_dir=tmp_path, search_dirs=[empty])
    message = str(error.value)
    assert "nltk.download('wordnet')" in message
    assert "wordnet-base" in message and "wordnet-sense-index" in message


def test_custom_vocabulary_list_and_file(tmp_path):
    terms = ["golden_retriever", "Golden Retriever", "  basal   cell carcinoma ", "", "melanoma", "golden-retriever"]
    assert load_vocabulary(terms) == ["golden retriever", "basal cell carcinoma", "melanoma"]
    path = tmp_path / "medical.txt"
    path.write_text("# dermatology terms\nmelanoma\n\nbasal_cell_carcinoma\nMelanoma\nnevus\n", encoding="utf-8")
    assert load_vocabulary(path) == ["melanoma", "basal cell carcinoma", "nevus"]
    assert load_vocabulary(os.fspath(path)) == ["melanoma", "basal cell carcinoma", "nevus"]


def test_custom_vocabulary_errors(tmp_path):
    with pytest.raises(ValueError, match="not a file"):
        load_vocabulary(str(tmp_path / "missing.txt"))
    with pytest.raises(ValueError, match="empty"):
        load_vocabulary(["", "  "])
    with pytest.raises(TypeError):
        clean_terms(["ok", 3])


def test_term_key_is_case_and_separator_insensitive():
    assert term_key("Golden_Retriever") == term_key("golden-retriever") == term_key(" golden  retriever ")
    assert term_key("golden retriever") != term_key("goldenretriever")


def test_wordnet_available_follows_both_sources(monkeypatch):
    assert vocab.wordnet_available()  # CI installs the Debian files
    monkeypatch.setattr(vocab, "_nltk_wordnet_path", lambda: None)
    monkeypatch.setattr(vocab, "find_wordnet_dir", lambda *a, **k: None)
    assert not vocab.wordnet_available()
