"""English number words: cardinals, ordinals, years, decimals and digit strings.

Written for the normalizer rather than taken from a library so the readings
match what a narrator says ("nineteen eighty-four", "two thousand five",
"three point one four") and need no extra dependency.
"""
from __future__ import annotations

ONES = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen "
    "fourteen fifteen sixteen seventeen eighteen nineteen"
).split()
TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()
#: Powers of a thousand, smallest first; numbers beyond the last are read digit by digit.
SCALES = ("", "thousand", "million", "billion", "trillion", "quadrillion")
IRREGULAR_ORDINALS = {
    "one": "first", "two": "second", "three": "third", "five": "fifth",
    "eight": "eighth", "nine": "ninth", "twelve": "twelfth",
}
#: Years in this range are read in pairs ("nineteen eighty-four").
YEAR_PAIR_MIN, YEAR_PAIR_MAX = 1000, 2099


def _under_hundred(n: int) -> str:
    if n < 20:
        return ONES[n]
    tens, ones = divmod(n, 10)
    return TENS[tens] + (f"-{ONES[ones]}" if ones else "")


def _under_thousand(n: int) -> str:
    hundreds, rest = divmod(n, 100)
    parts = []
    if hundreds:
        parts.append(f"{ONES[hundreds]} hundred")
    if rest or not hundreds:
        parts.append(_under_hundred(rest))
    return " ".join(parts)


def cardinal(n: int) -> str:
    """Words for an integer: ``cardinal(1234)`` -> "one thousand two hundred thirty-four"."""
    if n < 0:
        return "minus " + cardinal(-n)
    if n < 1000:
        return _under_thousand(n)
    if n >= 1000 ** len(SCALES):
        return digits(str(n))
    groups = []
    scale = 0
    while n:
        n, group = divmod(n, 1000)
        if group:
            words = _under_thousand(group)
            groups.append(f"{words} {SCALES[scale]}".strip())
        scale += 1
    return " ".join(reversed(groups))


def ordinal(n: int) -> str:
    """Ordinal words: ``ordinal(22)`` -> "twenty-second"."""
    words = cardinal(n)
    head, sep, last = words.rpartition(" ")
    pre, dash, last_word = last.rpartition("-")
    if last_word in IRREGULAR_ORDINALS:
        last_word = IRREGULAR_ORDINALS[last_word]
    elif last_word.endswith("y"):
        last_word = last_word[:-1] + "ieth"
    else:
        last_word += "th"
    return head + sep + pre + dash + last_word


def year(n: int) -> str:
    """How a year is said: 1984 -> "nineteen eighty-four", 2005 -> "two thousand five"."""
    if not YEAR_PAIR_MIN <= n <= YEAR_PAIR_MAX:
        return cardinal(n)
    high, low = divmod(n, 100)
    if n % 1000 == 0 or 2000 <= n < 2010:
        return cardinal(n)
    if low == 0:
        return f"{cardinal(high)} hundred"
    if low < 10:
        return f"{cardinal(high)} oh {ONES[low]}"
    return f"{cardinal(high)} {_under_hundred(low)}"


def digits(text: str) -> str:
    """Each digit of ``text`` as a word: "042" -> "zero four two"."""
    return " ".join(ONES[int(ch)] for ch in text if ch.isdigit())


def decimal(text: str) -> str:
    """A decimal number written with a point: "3.14" -> "three point one four"."""
    whole, _, fraction = text.partition(".")
    whole_words = cardinal(int(whole.replace(",", ""))) if whole else "zero"
    if not fraction:
        return whole_words
    return f"{whole_words} point {digits(fraction)}"
