"""The checkers' messages in the learner's language: English, or Chinese from a gettext catalogue.

The English text is the message id (gettext's model), so English output is the text as the
checkers build it, byte for byte. ``locale/zh.po`` holds the Chinese: each ``msgid`` is an English
message with ``{placeholders}`` for its values (numbers, names, shapes, code), so one entry serves
every value. A placeholder whose name starts with ``msg`` holds a message itself and is translated
in turn (``"Not correct: {msg}"``); one whose name starts with ``opt`` (a call such as ``mae_loss(target
[2, 10, 16], mask [2, 10] with 7 removed per image)``) is translated where an entry of context ``call`` (``msgctxt "call"``) matches it and is code otherwise; any other placeholder is copied as it is.

The language: ``$MAE_LESSON_LANG`` (``zh`` or ``en``), else Chinese when the kernel runs in a folder
named ``zh`` (JupyterLab and nbval start the kernels of ``notebooks/zh/*.ipynb`` there), else English.
On Colab, where the set-up cell moves into ``notebooks/``, a Chinese reader runs
``%env MAE_LESSON_LANG=zh`` first. ``python -m tools.i18n_sync build`` passes the committed outputs of
the Chinese notebooks' checker cells through :func:`translate` too.
"""

from __future__ import annotations

import ast
import functools
import os
import re
from pathlib import Path

LANGUAGES = ("en", "zh")
CATALOGUE_DIR = Path(__file__).with_name("locale")
_PLACEHOLDER = re.compile(r"\{(\w+)\}")
# Lines no catalogue entry can cover: a learner's traceback frame or source line (indented) and the
# exception line that ends it ("ValueError: ..."), which are the learner's and Python's, not ours.
_VERBATIM = re.compile(r"^(\s|[A-Za-z_][\w.]*(Error|Exception|Interrupt|Warning)\b)")
_warned: set[str] = set()


def language() -> str:
    """``"zh"`` or ``"en"``: ``$MAE_LESSON_LANG`` if set, else ``"zh"`` in a folder named ``zh``."""
    value = os.environ.get("MAE_LESSON_LANG", "").strip().lower()
    if value:
        code = value.replace("-", "_").split("_")[0]
        if code in LANGUAGES:
            return code
        if value not in _warned:  # a typo must not stop a notebook: say it once, go on in English
            _warned.add(value)
            print(f"MAE_LESSON_LANG={value!r} is not a checker language ({', '.join(LANGUAGES)}); using English")
        return "en"
    return "zh" if Path.cwd().name == "zh" else "en"


def _unquote(text: str) -> str:
    return ast.literal_eval(text)  # a .po string is a C-style quoted string, which Python reads alike


def read_po(path: Path) -> dict[str, str]:
    """``{msgid: msgstr}`` of a gettext ``.po`` file (no plural forms; the header skipped; an entry with a
    ``msgctxt`` keyed ``context + "\x04" + msgid``)."""
    entries: dict[str, str] = {}
    field, parts, current = None, [], {}

    def flush() -> None:
        if field is not None:
            current[field] = "".join(parts)

    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        keyword = re.match(r"(msgctxt|msgid|msgstr)\s+(\".*\")$", line)
        if keyword:
            flush()
            if keyword.group(1) in ("msgctxt", "msgid") and "msgstr" in current:
                _add(entries, current)
                current = {}
            field, parts = keyword.group(1), [_unquote(keyword.group(2))]
        elif line.startswith('"') and field is not None:
            parts.append(_unquote(line))
        else:
            raise ValueError(f"{path.name}, line {number}: expected msgctxt, msgid, msgstr or a quoted string, "
                             f"got {line!r}")
    flush()
    _add(entries, current)
    return entries


def _add(entries: dict[str, str], entry: dict[str, str]) -> None:
    """Keep one parsed entry; one with a context is keyed ``context + "\x04" + msgid``, as gettext does."""
    if entry.get("msgid"):
        key = entry["msgid"] if "msgctxt" not in entry else f"{entry['msgctxt']}\x04{entry['msgid']}"
        entries[key] = entry.get("msgstr", "")


@functools.lru_cache(maxsize=None)
def catalogue(lang: str, context: str = "") -> list[tuple[re.Pattern, str, tuple[str, ...]]]:
    """The entries of ``locale/<lang>.po`` as (pattern over the English, translation, placeholder names).

    Order: entries that start with fixed text (``"Not correct: {msg}"``) before those that start with a
    value (``"{where}: expected ..."``), whose value could otherwise swallow the fixed start; then the
    most fixed text first, so that a general frame never hides a named mistake."""
    entries = []
    for key, msgstr in read_po(CATALOGUE_DIR / f"{lang}.po").items():
        ctx, _, msgid = key.rpartition("\x04")
        if not msgstr or ctx != context:
            continue
        pieces = _PLACEHOLDER.split(msgid)  # fixed text, name, fixed text, name, ...
        names = tuple(pieces[1::2])
        pattern = "".join(re.escape(p) if i % 2 == 0 else "(.+?)" for i, p in enumerate(pieces))
        fixed = sum(len(p) for p in pieces[0::2])
        entries.append(((msgid.startswith("{"), -fixed), re.compile(pattern + r"\Z", re.S), msgstr, names))
    entries.sort(key=lambda e: e[0])
    return [e[1:] for e in entries]


def _translate_message(text: str, lang: str, missing: list[str], context: str = "") -> str:
    for pattern, msgstr, names in catalogue(lang, context):
        match = pattern.match(text)
        if match is None:
            continue
        values = dict(zip(names, match.groups()))
        for name, value in values.items():
            if name.startswith("msg"):
                values[name] = _translate_message(value, lang, missing)
            elif name.startswith("opt"):  # a call description: translated where it has words, else code
                values[name] = _translate_message(value, lang, [], context="call")
        return _PLACEHOLDER.sub(lambda m: values[m.group(1)], msgstr)
    missing.append(text)
    return text


def translate(text: str, lang: str | None = None, missing: list[str] | None = None) -> str:
    """``text`` (one or more printed lines) in ``lang`` (default :func:`language`); English is returned as is.

    A line with no catalogue entry stays English and is appended to ``missing`` (when given), except a
    learner's traceback line, which is always kept as it is.
    """
    lang = lang or language()
    if lang == "en":
        return text
    found: list[str] = []
    lines = [line if not line or _VERBATIM.match(line) else _translate_message(line, lang, found) for line in text.split("\n")]
    if missing is not None:
        missing.extend(found)
    return "\n".join(lines)


def say(text: str) -> None:
    """Print a checker message in the learner's language."""
    print(translate(text))
