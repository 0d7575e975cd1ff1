"""Rule names an analyst cannot tell apart: the same letters in another case, another
width or another script.

Alerts carry their rule's name, and Kibana lists them by it: `SSH-Brute-Force` beside
`ssh-brute-force`, or `Port scan` beside `Pоrt scan` (a Cyrillic о), are two rules that
read as one, whose alerts an analyst would take for one rule's. Two names are alike
when their skeletons are equal: compatibility forms folded (NFKC: a fullwidth Ａ is an
A), the Cyrillic and Greek letters that look like Latin ones read as those, a capital I
read as a small l (Kibana's sans-serif font draws them alike), then the case folded.

Only the look-alikes of Latin letters are listed, not all of Unicode's confusables: names
are written in Latin by the SOCs this agent is for, and the list is what they mistype.
"""

from __future__ import annotations

import unicodedata

# Letters drawn as a Latin letter, by the Latin letter they are drawn as.
_LIKE_LATIN = {
    "A": "АΑ", "B": "ВΒ", "C": "СϹ", "E": "ЕΕ", "H": "НΗ", "I": "ІΙӀ", "J": "Ј", "K": "КΚ",
    "M": "МΜ", "N": "Ν", "O": "ОΟ", "P": "РΡ", "Q": "Ԛ", "S": "Ѕ", "T": "ТΤ", "W": "Ԝ",
    "X": "ХΧ", "Y": "УΥҮ", "Z": "Ζ",
    "a": "а", "c": "сϲ", "d": "ԁ", "e": "е", "h": "һ", "i": "іι", "j": "ј", "k": "κ",
    "l": "ӏ", "o": "оο", "p": "рρ", "q": "ԛ", "s": "ѕ", "v": "ν", "w": "ԝ", "x": "хχ",
    "y": "уү",
}  # fmt: skip
_TO_LATIN = str.maketrans({c: latin for latin, alike in _LIKE_LATIN.items() for c in alike})


def skeleton(name: str) -> str:
    """What `name` looks like: equal for two names an analyst cannot tell apart."""
    shown = unicodedata.normalize("NFKC", name).translate(_TO_LATIN)
    return shown.replace("I", "l").casefold()


def how_they_differ(one: str, other: str) -> str:
    """The characters that tell two alike names apart, said by their code points."""
    if len(one) != len(other):
        return "they differ only in letters that look alike"
    pairs = [(a, b) for a, b in zip(one, other, strict=True) if a != b]
    if all(a.casefold() == b.casefold() for a, b in pairs):
        return "they differ only in case"
    a, b = next((a, b) for a, b in pairs if a.casefold() != b.casefold())
    return f"this one has {_said(a)} where it has {_said(b)}"


def _said(c: str) -> str:
    return f"{c!r} (U+{ord(c):04X} {unicodedata.name(c, 'unnamed')})"
