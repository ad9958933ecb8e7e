from synthloom.quality.filters import (
    blacklisted_words,
    detect_language,
    language,
    leaked_template,
    length_bounds,
    named,
    refusal,
    repeated_ngram_ratio,
    repetition,
    run_filters,
)


def test_length_bounds():
    assert length_bounds("one two").ok is False and "too_short" in length_bounds("one two").reason
    assert length_bounds("word " * 151).reason.startswith("too_long")
    assert length_bounds("Sort this list please").ok


def test_repetition_ratio_hand_computed():
    # "a b a b a b": 3-grams aba, bab, aba, bab -> 2 repeats of 4
    assert repeated_ngram_ratio("a b a b a b", 3) == 0.5
    assert not repetition("go go go go go go go go").ok
    assert repetition("Write a function that reverses a linked list in place.").ok


def test_refusals_and_template_leaks():
    assert not refusal("I'm sorry, but I cannot help with that request.").ok
    assert not refusal("As an AI language model, I don't have opinions.").ok
    assert refusal("Sorting is a way to order items.").ok
    assert not leaked_template("<|im_start|>assistant Sure").ok
    assert not leaked_template("### Instruction: do x").ok
    assert leaked_template("Plain answer text.").ok


def test_language_detection():
    assert detect_language("The cat is on the table and it is sleeping.") == "en"
    assert detect_language("Der Hund ist nicht in dem Garten und die Katze schläft.") == "de"
    assert detect_language("El perro no está en el jardín y la casa es grande.") == "es"
    assert detect_language("我们今天去公园散步。") == "zh"
    assert detect_language("今日は公園に行きました。") == "ja"
    assert detect_language("Это простой текст на русском языке.") == "ru"
    assert not language("Le chat est sur la table et il dort dans la maison.").ok
    assert language("我们今天去公园散步。", expected=("zh",)).ok


def test_blacklist_and_run_filters_names_first_failure():
    assert not blacklisted_words("Draw a picture of a cat").ok
    assert blacklisted_words("Profile the program").ok  # whole words only ("file" inside "Profile")
    filters = [named(length_bounds, min_words=2), refusal]
    assert run_filters("I'm sorry, I can't assist", filters)[:2] == (False, "refusal")
    assert run_filters("hi", filters)[:2] == (False, "length_bounds")
    assert run_filters("Sort a list of numbers", filters) == (True, "", "")
