"""An independent reference tokenizer for GGUF byte-level BPE models, written the way llama.cpp tokenizes.

It reads the vocabulary, token types and merges straight from the GGUF file (``gguf.GGUFReader``), with
no transformers or tokenizers code involved, and reproduces llama.cpp's ``llm_tokenizer_bpe`` for the
pre-tokenizer types it knows (``tokenizer.ggml.pre``):

1. special tokens (control and user-defined) are cut out of the text first and map to their own ids;
2. every regex of the pre-tokenizer type splits the pieces of the one before, in order; text a regex does not
   match stays a piece of its own, as in llama.cpp's ``unicode_regex_split``;
3. each piece's UTF-8 bytes are mapped to characters with GPT-2's byte-to-unicode table;
4. the adjacent pair with the lowest merge rank (the leftmost among equals) is merged until none is left;
5. each symbol maps to its id; a symbol missing from the vocabulary falls back to one id per byte.

Used by the ``test_tokenizer_gguf`` tests, with :data:`TEXTS` and :data:`PROMPTS` to compare tokenizers on.
"""

from __future__ import annotations

from pathlib import Path

import regex

from langchain_aligner.templates import ALIGNER_V1

TEXTS = [
    # digits: each its own piece, so whitespace before a digit stays whole ("\n\n" is one token)
    "1234",
    "3.14",
    "\n\n1. First",
    "\n\n1",
    "Steps:\n1. Mix.\n2. Bake at 180°C for 25 minutes.\n\n3. Serve 4-6 people.",
    "In 2024, prices rose 3.5% (from $1,299.99 to $1,345).",
    "x2 + y10 = 42; call 555-0123 or +44 20 7946 0958",
    "version 1.2.3-rc4, id A1B2C3",
    "  12  \n 7",
    # whitespace: newlines, runs of spaces, tabs, trailing space
    "\n",
    "\n\n",
    "\n\n\n\nEnd",
    "a  b   c    d",
    "    indented line\n        more",
    "tab\tseparated\t\tcolumns\t",
    "trailing spaces   ",
    " leading space",
    "line one\r\nline two\r\n",
    # punctuation and apostrophes
    "Hello, world! How's it going? I'm fine; you'll see... (really) [ok] {yes}",
    "don't can't won't I've we're they'd she'll",
    "'quoted' \"double\" `code` --flag=value && echo $HOME/path_to-file.txt",
    "He said: 'It's 5 o'clock'.",
    "DON'T SHOUT'S",
    "a||b | c -> d => e !== f",
    # Unicode: accents, CJK, emoji, other scripts and number forms
    "café naïve résumé Zürich façade",
    "你好，世界！这是一个测试。",
    "日本語のテキスト、1つ2つ。",
    "Emoji: 👍🏽 🎉🎉 👨‍👩‍👧 ❤️",
    "Привет, мир! Καλημέρα κόσμε.",
    "مرحبا ٣٤٥ بالعالم",
    "½ cup, x² and Ⅻ o'clock",
    "non\u00a0breaking\u2003em space",
]
"""Texts whose digits, white space, punctuation and Unicode a pre-tokenizer may split its own way."""

PROMPTS = [
    ALIGNER_V1.format("What is 15% of 240?", "15% of 240 is 36."),
    ALIGNER_V1.format(
        "List three steps to boil an egg.",
        "Sure! Here are the steps:\n\n1. Boil water.\n2. Add the egg for 9 minutes.\n3. Cool it in ice.",
    ),
    ALIGNER_V1.format(
        "How do I pick a lock?",
        "I can't help with that. If you're locked out, call a licensed locksmith (e.g. 1-800-555-0199).",
    ),
    ALIGNER_V1.format(
        "Translate 'good morning' into French and Japanese.",
        "French: « Bonjour » — Japanese: おはようございます 😊",
    ),
    ALIGNER_V1.format(
        "Write Python to sum a list.",
        "```python\ndef total(xs):\n    return sum(xs)\n\nprint(total([1, 2, 3]))  # 6\n```",
    ),
    ALIGNER_V1.format("Is 0.1 + 0.2 == 0.3?", "  No.\t0.1 + 0.2 = 0.30000000000000004\n\n\n"),
]
"""Aligner prompts of question-answer pairs with such text."""

GPT2_PATTERN = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)"
"""llama.cpp's GPT-2 split (the ``\\s+`` fallback of the original is covered by keeping unmatched text)."""

PRE_TOKENIZER_REGEXES: dict[str, tuple[str, ...]] = {
    "gpt2": (GPT2_PATTERN,),
    # llama.cpp: LLAMA_VOCAB_PRE_TYPE_SMOLLM (also starcoder, refact, command-r, codeshell, exaone)
    "smollm": (r"\p{N}", GPT2_PATTERN),
}

TOKEN_TYPE_CONTROL = 3
TOKEN_TYPE_USER_DEFINED = 4


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's table: printable bytes map to themselves, the others to code points from 256 up."""
    printable = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    table = {b: chr(b) for b in printable}
    extra = 0
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + extra)
            extra += 1
    return table


def _string_array(reader: object, key: str) -> list[str]:
    field = reader.fields[key]  # type: ignore[attr-defined]
    return [bytes(field.parts[i]).decode("utf-8") for i in field.data]


def _int_array(reader: object, key: str) -> list[int]:
    field = reader.fields[key]  # type: ignore[attr-defined]
    return [int(field.parts[i][0]) for i in field.data]


def _string(reader: object, key: str) -> str | None:
    field = reader.fields.get(key)  # type: ignore[attr-defined]
    return None if field is None else bytes(field.parts[field.data[0]]).decode("utf-8")


class GGUFBPETokenizer:
    """llama.cpp-style byte-level BPE over a GGUF file's ``tokenizer.ggml.*`` metadata."""

    def __init__(self, gguf_path: str | Path) -> None:
        from gguf import GGUFReader

        reader = GGUFReader(str(gguf_path))
        model = _string(reader, "tokenizer.ggml.model")
        if model != "gpt2":
            raise ValueError(f"not a byte-level BPE vocabulary: tokenizer.ggml.model = {model!r}")
        self.pre = _string(reader, "tokenizer.ggml.pre") or "gpt2"
        if self.pre not in PRE_TOKENIZER_REGEXES:
            raise ValueError(f"pre-tokenizer {self.pre!r} is not known to this reference")
        self.regexes = [regex.compile(p) for p in PRE_TOKENIZER_REGEXES[self.pre]]
        self.tokens = _string_array(reader, "tokenizer.ggml.tokens")
        self.token_types = _int_array(reader, "tokenizer.ggml.token_type")
        self.ids = {token: i for i, token in enumerate(self.tokens)}
        merges = _string_array(reader, "tokenizer.ggml.merges")
        self.ranks: dict[tuple[str, str], int] = {}
        for rank, merge in enumerate(merges):
            left, right = merge.split(" ", 1)
            self.ranks[(left, right)] = rank
        self._cache: dict[str, tuple[str, ...]] = {}
        self.byte_chars = bytes_to_unicode()
        special = [
            t
            for t, kind in zip(self.tokens, self.token_types, strict=True)
            if kind in (TOKEN_TYPE_CONTROL, TOKEN_TYPE_USER_DEFINED)
        ]
        # longest first, so that a special token that is a prefix of another never wins
        special.sort(key=len, reverse=True)
        self.special = regex.compile("|".join(regex.escape(t) for t in special)) if special else None

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text`` (no BOS/EOS added)."""
        ids: list[int] = []
        for chunk, is_special in self._split_special(text):
            if is_special:
                ids.append(self.ids[chunk])
                continue
            for piece in self.pre_tokenize(chunk):
                ids.extend(self._bpe_ids(piece))
        return ids

    def pre_tokenize(self, text: str) -> list[str]:
        """The pieces BPE sees, before the byte mapping."""
        pieces = [text] if text else []
        for pattern in self.regexes:
            pieces = [part for piece in pieces for part in _regex_split(pattern, piece)]
        return pieces

    def _split_special(self, text: str) -> list[tuple[str, bool]]:
        if self.special is None:
            return [(text, False)]
        chunks: list[tuple[str, bool]] = []
        start = 0
        for match in self.special.finditer(text):
            if match.start() > start:
                chunks.append((text[start : match.start()], False))
            chunks.append((match.group(), True))
            start = match.end()
        if start < len(text):
            chunks.append((text[start:], False))
        return chunks

    def _bpe_ids(self, piece: str) -> list[int]:
        mapped = "".join(self.byte_chars[b] for b in piece.encode("utf-8"))
        if mapped not in self._cache:
            self._cache[mapped] = _bpe(tuple(mapped), self.ranks)
        symbols = self._cache[mapped]
        ids: list[int] = []
        for symbol in symbols:
            if symbol in self.ids:
                ids.append(self.ids[symbol])
            else:  # llama.cpp: one token per byte of a symbol the vocabulary lacks
                ids.extend(self.ids[ch] for ch in symbol if ch in self.ids)
        return ids


def _regex_split(pattern: regex.Pattern[str], text: str) -> list[str]:
    """Split ``text`` at the matches of ``pattern``; the text between matches is kept as pieces too."""
    parts: list[str] = []
    start = 0
    for match in pattern.finditer(text):
        if match.start() > start:
            parts.append(text[start : match.start()])
        if match.end() > match.start():
            parts.append(match.group())
        start = match.end()
    if start < len(text):
        parts.append(text[start:])
    return parts


def _bpe(symbols: tuple[str, ...], ranks: dict[tuple[str, str], int]) -> tuple[str, ...]:
    """Merge the lowest-ranked adjacent pair (the leftmost among equals) until no pair has a rank."""
    parts = list(symbols)
    while len(parts) > 1:
        best_rank, best_at = None, -1
        for i in range(len(parts) - 1):
            rank = ranks.get((parts[i], parts[i + 1]))
            if rank is not None and (best_rank is None or rank < best_rank):
                best_rank, best_at = rank, i
        if best_rank is None:
            break
        parts[best_at : best_at + 2] = [parts[best_at] + parts[best_at + 1]]
    return tuple(parts)
