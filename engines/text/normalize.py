"""Text normalization: written forms a narrator would say differently.

English is handled here in full (numbers, dates, times, money, abbreviations,
symbols, web addresses); other languages only get light cleanup and rely on
espeak-ng's own number and abbreviation rules. Phoneme blocks written as
``[[ phonemes ]]`` (from a user lexicon) are never touched.
"""
from __future__ import annotations

import re
import unicodedata
from typing import Callable, Optional

from engines.text import numbers
from engines.text.lexicon import PHONEME_BLOCK, Lexicon

MONTHS = (
    "January February March April May June July August September October November December"
).split()
MONTH_ABBREVIATIONS = {m[:3]: m for m in MONTHS} | {"Sept": "September"}
_MONTH_RE = r"(?:" + "|".join(MONTHS + sorted(MONTH_ABBREVIATIONS, key=len, reverse=True)) + r")"

#: name, singular, plural, minor unit singular, minor unit plural.
CURRENCIES = {
    "$": ("dollar", "dollars", "cent", "cents"),
    "€": ("euro", "euros", "cent", "cents"),
    "£": ("pound", "pounds", "penny", "pence"),
    "¥": ("yen", "yen", "sen", "sen"),
}
CURRENCY_CODES = {"USD": "$", "EUR": "€", "GBP": "£", "JPY": "¥"}
SCALE_WORDS = {
    "k": "thousand", "thousand": "thousand", "m": "million", "mn": "million",
    "million": "million", "b": "billion", "bn": "billion", "billion": "billion",
    "trillion": "trillion",
}

#: Abbreviations always expanded the same way (matched case-sensitively).
ABBREVIATIONS = {
    "Mr.": "Mister", "Mrs.": "Misses", "Ms.": "Miz", "Dr.": "Doctor", "Prof.": "Professor",
    "Jr.": "Junior", "Sr.": "Senior", "Gen.": "General", "Capt.": "Captain",
    "Lt.": "Lieutenant", "Col.": "Colonel", "Sgt.": "Sergeant", "Rev.": "Reverend",
    "Hon.": "Honorable", "Mt.": "Mount", "Ave.": "Avenue", "Rd.": "Road", "Blvd.": "Boulevard",
    "etc.": "et cetera", "e.g.": "for example", "i.e.": "that is", "vs.": "versus",
    "approx.": "approximately", "Fig.": "Figure", "Vol.": "Volume", "Ch.": "Chapter",
    "Inc.": "Incorporated", "Ltd.": "Limited", "Dept.": "Department",
}
SYMBOLS = {
    "&": " and ", "+": " plus ", "@": " at ", "=": " equals ", "×": " times ",
    "°C": " degrees Celsius", "°F": " degrees Fahrenheit", "°": " degrees",
}
URL_SEPARATORS = {".": " dot ", "/": " slash ", "-": " dash ", "_": " underscore ",
                  ":": " colon ", "?": " question mark ", "=": " equals ", "&": " and ",
                  "@": " at ", "+": " plus ", "#": " hash "}
TOP_LEVEL_DOMAINS = "com|org|net|edu|gov|io|co|uk|de|fr|ai|dev|info|biz|us|ca|au"
ROMAN_VALUES = {"I": 1, "V": 5, "X": 10, "L": 50, "C": 100, "D": 500, "M": 1000}
#: Words after which a Roman numeral is a number (Chapter IV, Part II).
ROMAN_KEYWORDS = "Chapter|Book|Part|Volume|Section|Act|Scene|Canto|Letter|Appendix"
_END_OF_TEXT = re.compile(r"""\s*["')\]]*\s*$""")

Rule = tuple[re.Pattern, Callable[[re.Match], str]]


def _keep_final_period(match: re.Match, spoken: str) -> str:
    """A consumed period that also ended the text must stay, or the sentence loses its end."""
    if match.group(0).endswith(".") and _END_OF_TEXT.fullmatch(match.string, match.end()):
        return spoken + "."
    return spoken


def _int(text: str) -> int:
    return int(text.replace(",", ""))


def _plural(words: str) -> str:
    """Plural of number words: "eighty" -> "eighties", "six" -> "sixes"."""
    if words.endswith("y"):
        return words[:-1] + "ies"
    return words + ("es" if words.endswith(("x", "s")) else "s")


def roman_to_int(text: str) -> Optional[int]:
    """Value of a well-formed Roman numeral, or None."""
    total = 0
    for ch, nxt in zip(text, text[1:] + " "):
        value = ROMAN_VALUES[ch]
        total += -value if ROMAN_VALUES.get(nxt, 0) > value else value
    return total if total and _int_to_roman(total) == text else None


def _int_to_roman(n: int) -> str:
    out = []
    for value, letters in ((1000, "M"), (900, "CM"), (500, "D"), (400, "CD"), (100, "C"),
                           (90, "XC"), (50, "L"), (40, "XL"), (10, "X"), (9, "IX"),
                           (5, "V"), (4, "IV"), (1, "I")):
        count, n = divmod(n, value)
        out.append(letters * count)
    return "".join(out)


# --- spoken forms -----------------------------------------------------------

def _say_web(text: str) -> str:
    text = re.sub(r"^(?:https?|ftp)://", "", text)
    spoken = "".join(URL_SEPARATORS.get(ch, ch) for ch in text.rstrip("/"))
    return " " + re.sub(r"\s+", " ", spoken).strip() + " "


def _say_money(symbol: str, amount: str, scale: Optional[str]) -> str:
    major, majors, minor, minors = CURRENCIES[symbol]
    if scale:
        return f"{numbers.decimal(amount)} {SCALE_WORDS[scale.lower()]} {majors}"
    whole, _, cents = amount.partition(".")
    whole_n = _int(whole) if whole else 0
    parts = []
    if whole_n or not cents:
        parts.append(f"{numbers.cardinal(whole_n)} {major if whole_n == 1 else majors}")
    if cents and len(cents) <= 2 and int(cents):
        cents_n = int(cents.ljust(2, "0"))
        parts.append(f"{numbers.cardinal(cents_n)} {minor if cents_n == 1 else minors}")
    elif cents and len(cents) > 2:
        return f"{numbers.decimal(amount.replace(',', ''))} {majors}"
    return " and ".join(parts)


def _say_time(hour: str, minute: Optional[str], meridiem: Optional[str]) -> str:
    words = numbers.cardinal(int(hour))
    minute_n = int(minute) if minute else 0
    if minute_n:
        words += (" oh " + numbers.ONES[minute_n]) if minute_n < 10 else " " + numbers.cardinal(minute_n)
    elif not meridiem:
        words += " o'clock"
    if meridiem:
        words += f" {meridiem[0].lower()} m"
    return words


def _say_date(day: str, month: str, year: Optional[str], day_first: bool) -> str:
    month = MONTH_ABBREVIATIONS.get(month, month)
    day_words = numbers.ordinal(int(day))
    spoken = f"the {day_words} of {month}" if day_first else f"{month} {day_words}"
    if year:
        spoken += f", {numbers.year(int(year))}"
    return spoken


def _say_number(text: str) -> str:
    """A bare integer: years in pairs, leading zeros and very long numbers digit by digit."""
    plain = text.replace(",", "")
    if len(plain) > 1 and plain.startswith("0") or len(plain) > 15:
        return numbers.digits(plain)
    if "," not in text and len(plain) == 4:
        return numbers.year(int(plain))
    return numbers.cardinal(int(plain))


def _say_phone(text: str) -> str:
    """Digit by digit, a pause between groups: "555-1234" -> "five five five, one two three four"."""
    groups = re.findall(r"\d+", text)
    return ", ".join(numbers.digits(g) for g in groups)


def _say_fraction(numerator: int, denominator: int) -> str:
    """Simple fractions: 1/2 -> "one half", 3/4 -> "three quarters", 2/3 -> "two thirds"."""
    if denominator < 2:
        return f"{numbers.cardinal(numerator)} over {numbers.cardinal(denominator)}"
    name = {2: "half", 4: "quarter"}.get(denominator) or numbers.ordinal(denominator)
    if numerator != 1:
        name = "halves" if name == "half" else name + "s"
    return f"{numbers.cardinal(numerator)} {name}"


# --- rules --------------------------------------------------------------------

def _rule(pattern: str, spoken: Callable[[re.Match], str], flags: int = 0) -> Rule:
    return re.compile(pattern, flags), spoken


def _abbreviation_rule() -> Rule:
    keys = sorted(ABBREVIATIONS, key=len, reverse=True)
    pattern = r"(?<![\w.])(?:" + "|".join(re.escape(k) for k in keys) + r")(?!\w)"
    return _rule(pattern, lambda m: _keep_final_period(m, ABBREVIATIONS[m.group(0)]))


def _saint_or_street(match: re.Match) -> str:
    # "St. Louis" is a saint; "Baker St." is a street.
    following = match.string[match.end():].lstrip()
    word = "Saint" if following[:1].isupper() else "Street"
    return _keep_final_period(match, word)


_NUM = r"\d{1,3}(?:,\d{3})+|\d+"

ENGLISH_RULES: list[Rule] = [
    _rule(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+", lambda m: _say_web(m.group(0))),
    _rule(r"\b(?:(?:https?|ftp)://|www\.)[^\s\"'<>()]*[^\s\"'<>().,;:!?]",
          lambda m: _say_web(m.group(0))),
    _rule(rf"\b[a-z0-9-]+(?:\.[a-z0-9-]+)*\.(?:{TOP_LEVEL_DOMAINS})\b(?:/[^\s\"'<>()]*[^\s\"'<>().,;:!?])?",
          lambda m: _say_web(m.group(0))),
    _rule(rf"\b({ROMAN_KEYWORDS})\s+([IVXLCDM]+)\b",
          lambda m: f"{m.group(1)} {numbers.cardinal(roman_to_int(m.group(2)))}"
          if roman_to_int(m.group(2)) else m.group(0)),
    _rule(r"\b(\d{4})-(\d{2})-(\d{2})\b",
          lambda m: _say_date(m.group(3), MONTHS[int(m.group(2)) - 1], m.group(1), False)
          if 1 <= int(m.group(2)) <= 12 and 1 <= int(m.group(3)) <= 31 else m.group(0)),
    _rule(rf"\b(\d{{1,2}})(?:st|nd|rd|th)?\s+(?:of\s+)?({_MONTH_RE})\b\.?(?:,?\s+(\d{{4}})\b)?",
          lambda m: _keep_final_period(m, _say_date(m.group(1), m.group(2), m.group(3), True))),
    _rule(rf"\b({_MONTH_RE})\.?\s+(\d{{1,2}})(?:st|nd|rd|th)?\b(?:,?\s+(\d{{4}})\b)?",
          lambda m: _say_date(m.group(2), m.group(1), m.group(3), False)),
    _rule(r"\b(\d{1,2})(?::(\d{2}))?\s*([AaPp])\.?\s?[Mm]\b\.?",
          lambda m: _keep_final_period(m, _say_time(m.group(1), m.group(2), m.group(3)))),
    _rule(r"\b([01]?\d|2[0-3]):([0-5]\d)\b", lambda m: _say_time(m.group(1), m.group(2), None)),
    _rule(rf"([$€£¥])\s?((?:{_NUM})(?:\.\d+)?|\.\d+)(?:\s?(thousand|million|billion|trillion|bn|mn|[kKmMbB])\b)?",
          lambda m: _say_money(m.group(1), m.group(2), m.group(3))),
    _rule(rf"\b((?:{_NUM})(?:\.\d+)?)\s?(USD|EUR|GBP|JPY)\b",
          lambda m: _say_money(CURRENCY_CODES[m.group(2)], m.group(1), None)),
    _rule(rf"(-?(?:{_NUM})(?:\.\d+)?)\s?%",
          lambda m: f"{_say_signed_decimal(m.group(1))} percent"),
    _rule(rf"\b({_NUM})(st|nd|rd|th)\b", lambda m: numbers.ordinal(_int(m.group(1)))),
    _rule(r"\b(1\d{3}|20\d{2})s\b", lambda m: _plural(numbers.year(int(m.group(1))))),
    _rule(r"\bSt\.(?!\w)", _saint_or_street),
    _abbreviation_rule(),
    _rule(r"\bNo\.\s?(?=\d)", lambda m: "number "),
    _rule(r"#(?=\d)", lambda m: "number "),
    _rule(r"\b([A-Z])\.(?=\s+[A-Z])", lambda m: m.group(1)),
    _rule(r"\b([A-Z]{1,3})&([A-Z]{1,3})\b", lambda m: f"{' '.join(m.group(1))} and {' '.join(m.group(2))}"),
    # An ellipsis inside a sentence is a pause (espeak would run the words together).
    _rule(r"\s*\.{3,}(?=\s*\w)", lambda m: ", "),
    _rule(r"(?<!\w)(?:\(?\d{3}\)?[ .-])?\d{3}-\d{4}\b", lambda m: _say_phone(m.group(0))),
    _rule(r"\b\d+(?:\.\d+){2,}\b", lambda m: " point ".join(_say_number(p) for p in m.group(0).split("."))),
    _rule(r"(?<![\d/])(\d)/(\d{1,2})\b(?!/)", lambda m: _say_fraction(int(m.group(1)), int(m.group(2)))),
    _rule(r"(\d)\s?[–-]\s?(?=\d)", lambda m: f"{m.group(1)} to "),
    # "mp3", "Q3", "3D": a number glued to letters is still read as a number.
    _rule(r"(?<=[^\W\d_])(?=\d)|(?<=\d)(?=[^\W\d_])", lambda m: " "),
    _rule("|".join(re.escape(s) for s in sorted(SYMBOLS, key=len, reverse=True)),
          lambda m: SYMBOLS[m.group(0)]),
    _rule(rf"(?<![\w.])-?(?:{_NUM})?\.\d+\b|(?<![\w.,])-(?:{_NUM})\b",
          lambda m: _say_signed_decimal(m.group(0))),
    _rule(_NUM, lambda m: _say_number(m.group(0))),
]


def _say_signed_decimal(text: str) -> str:
    sign = "minus " if text.startswith("-") else ""
    body = text.lstrip("-").replace(",", "")
    return sign + (numbers.decimal(body) if "." in body else numbers.cardinal(int(body)))


def _cleanup(text: str) -> str:
    """Unify quotes, dashes and whitespace so later rules see one spelling."""
    text = unicodedata.normalize("NFC", text)
    text = text.translate(str.maketrans({"“": '"', "”": '"', "„": '"', "‘": "'", "’": "'",
                                         "…": "...", "\u00a0": " "}))
    # Emphasis and scene-break marks (*word*, * * *, ~~) are not read out.
    text = re.sub(r"[*~]+|(?<!\w)_+|_+(?!\w)", " ", text)
    return re.sub(r"\s+", " ", text).strip()


def normalize_english(text: str) -> str:
    """Rewrite an English text (without phoneme blocks) as the words to be spoken."""
    text = _cleanup(text)
    for pattern, spoken in ENGLISH_RULES:
        text = pattern.sub(spoken, text)
    return re.sub(r"\s+([,.;:!?])", r"\1", re.sub(r"\s+", " ", text)).strip()


def _normalizer_for(language: str) -> Callable[[str], str]:
    if language.lower().replace("_", "-").split("-")[0] == "en":
        return normalize_english
    return _cleanup


def normalize(text: str, language: str = "en-us", lexicon: Optional[Lexicon] = None) -> str:
    """Apply the user lexicon, then the language's normalization, keeping ``[[ ]]`` blocks."""
    if lexicon is not None:
        text = lexicon.apply(text)
    rewrite = _normalizer_for(language)
    out = []
    for part in PHONEME_BLOCK.split(text):
        if PHONEME_BLOCK.fullmatch(part):
            out.append(part)
        elif part.strip():
            # Keep the single space that separated this part from a neighbouring block.
            lead = " " if part[:1].isspace() else ""
            trail = " " if part[-1:].isspace() else ""
            out.append(lead + rewrite(part) + trail)
        elif part:
            out.append(" ")
    return re.sub(r"\s+", " ", "".join(out)).strip()
