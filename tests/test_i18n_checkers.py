"""The exercise checkers' messages in the learner's language (mae_lesson/exercises/_i18n.py, locale/zh.po).

Every message a checker prints in the exercise tests is held to the catalogue by the helpers in
conftest.py (``rejects``/``accepts``/``translated``); here: the catalogue itself, how the language is
chosen, and that English stays byte for byte what it was.
"""

from __future__ import annotations

import contextlib
import io
import re

import pytest

from conftest import translated
from mae_lesson.exercises import _i18n
from mae_lesson.exercises._i18n import CATALOGUE_DIR, read_po, translate
from mae_lesson.exercises.masking import check_random_masking
from mae_lesson.masking import random_masking


def _inverted_mask(x, mask_ratio, noise):
    x_masked, mask, ids_restore = random_masking(x, mask_ratio, noise)
    return x_masked, 1 - mask, ids_restore


def _verdict(monkeypatch, lang: str | None) -> str:
    if lang is None:
        monkeypatch.delenv("MAE_LESSON_LANG", raising=False)
    else:
        monkeypatch.setenv("MAE_LESSON_LANG", lang)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert check_random_masking(_inverted_mask) is False
    return out.getvalue()


ENGLISH = (
    "Not correct: random_masking(x [2, 49, 8], mask_ratio=0.75, noise): mask is inverted: expected 0 for the 12 kept "
    "patches and 1 for the 37 removed ones, got 1 for kept and 0 for removed (expected mask[0] = [0, 0, 1, 0, 1, 1, 1, "
    "1, 1, 1, 1, 0, ...], got [1, 1, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, ...])\n"
    "The notebook goes on with the reference solution. Fix my_random_masking and re-run this cell: the notebook picks "
    "your version up from the next cell on.\n"
)


@pytest.mark.parametrize("lang", [None, "en", "EN"])
def test_english_is_unchanged_byte_for_byte(monkeypatch, tmp_path, lang):
    monkeypatch.chdir(tmp_path)  # not a folder named zh
    assert _verdict(monkeypatch, lang) == ENGLISH


@pytest.mark.parametrize("lang", ["zh", "zh_CN", "zh-CN"])
def test_chinese_verdict_for_a_wrong_answer(monkeypatch, tmp_path, lang):
    monkeypatch.chdir(tmp_path)
    printed = _verdict(monkeypatch, lang)
    assert printed.startswith("不正确：random_masking(x [2, 49, 8], mask_ratio=0.75, noise)：掩码反了：保留的 12 个图像块应为 0")
    assert "笔记本接下来使用参考答案继续运行。修正 my_random_masking 后重新运行这个单元" in printed
    assert printed == translate(ENGLISH, "zh") and not re.search(r"[A-Za-z]{3,} [A-Za-z]{3,}", printed)


def test_a_kernel_started_in_a_folder_named_zh_prints_chinese(monkeypatch, tmp_path):
    (tmp_path / "zh").mkdir()
    monkeypatch.chdir(tmp_path / "zh")  # where JupyterLab and nbval start notebooks/zh/*.ipynb
    assert _verdict(monkeypatch, None).startswith("不正确：")
    assert _verdict(monkeypatch, "en") == ENGLISH  # the variable wins over the folder


def test_an_unknown_language_says_so_once_and_goes_on_in_english(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(_i18n, "_warned", set())
    first, second = _verdict(monkeypatch, "fr"), _verdict(monkeypatch, "fr")
    assert first == "MAE_LESSON_LANG='fr' is not a checker language (en, zh); using English\n" + ENGLISH
    assert second == ENGLISH


def test_a_message_without_an_entry_is_reported_and_fails_the_helpers(monkeypatch):
    monkeypatch.delenv("MAE_LESSON_I18N_MISSING", raising=False)  # the helpers' worklist mode never fails
    missing: list[str] = []
    text = "Not correct: my_x(4): a mistake nobody has translated\nThe notebook goes on with the reference solution."
    assert translate(text, "zh", missing).startswith("不正确：my_x(4): a mistake nobody has translated")
    assert missing == ["my_x(4): a mistake nobody has translated", "The notebook goes on with the reference solution."]
    with pytest.raises(AssertionError, match="no Chinese in mae_lesson/exercises/locale/zh.po"):
        translated(text)


def test_a_learners_traceback_is_kept_as_it_is():
    text = ("Traceback of your code (most recent call last):\n  a notebook cell, line 3, in my_patchify\n"
            "    return imgs.view(-1)\nRuntimeError: view size is not compatible")
    missing: list[str] = []
    assert translate(text, "zh", missing).split("\n") == ["你的代码的回溯（最近的调用在最后）：", *text.split("\n")[1:]]
    assert missing == []


def test_catalogue_entries_are_complete_and_keep_their_placeholders():
    entries = read_po(CATALOGUE_DIR / "zh.po")
    assert len(entries) > 150
    for msgid, msgstr in entries.items():
        assert msgstr, f"empty translation for {msgid!r}"
        assert sorted(re.findall(r"\{(\w+)\}", msgid)) == sorted(re.findall(r"\{(\w+)\}", msgstr)), msgid
        # Chinese (or its full-width punctuation), or a formula that reads the same in both
        assert re.search(r"[\u3000-\u303f\u4e00-\u9fff\uff00-\uffef]", msgstr) or msgstr == msgid, f"no Chinese in the translation of {msgid!r}"


def test_the_catalogue_ships_with_the_package():
    text = (CATALOGUE_DIR.parents[2] / "pyproject.toml").read_text(encoding="utf-8")
    assert '"exercises/locale/*.po"' in text


def test_a_broken_catalogue_line_is_named(tmp_path):
    po = tmp_path / "zh.po"
    po.write_text('msgid "Correct: {name}"\nmsgstr "正确：{name}"\nmsgstr_typo "x"\n', encoding="utf-8")
    with pytest.raises(ValueError, match=r"zh.po, line 3: expected msgctxt, msgid, msgstr or a quoted string"):
        read_po(po)


def test_tensor_values_are_copied_not_translated():
    # a value that happens to read like a message is never looked up: only msg... placeholders are
    assert translate("Correct: take .argmax(dim=1)", "zh") == "正确：take .argmax(dim=1)"


def test_the_progress_view_reads_chinese_verdicts():
    from tools.progress import ATTEMPTED, NOT_ATTEMPTED, PASSED, cell_status

    def status(english: str) -> str:
        return cell_status([{"output_type": "stream", "name": "stdout", "text": translate(english, "zh")}])

    assert status("Correct: random_masking\n") == PASSED
    assert status(ENGLISH) == ATTEMPTED
    assert status("Not attempted yet: write my_random_masking above, or open the reference solution below.\n") == NOT_ATTEMPTED
