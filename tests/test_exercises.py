"""Every chapter's exercises can be solved: each has a hint that the reader opens on demand, and
each exercise with a numeric answer has that answer computed, and checked by an assert, in a
hidden (``remove-cell``) cell of the page, so the book's build fails when an answer stops
holding. Reads the chapter sources only: fast."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]

# Words with which an exercise asks for a number (a size, a count, a range, a percentage).
NUMERIC_QUESTION = re.compile(
    r"\b(how many|how much|compute|count|find|predict|by what percentage|what is the|which p)\b",
    re.IGNORECASE,
)


def _chapters() -> list[str]:
    toc = yaml.safe_load((REPO_ROOT / "_toc.yml").read_text())
    files = [chapter["file"] for part in toc["parts"] for chapter in part["chapters"]]
    return [name for name in files if "## Exercises" in (REPO_ROOT / f"{name}.md").read_text()]


def _exercises(text: str) -> dict[int, str]:
    """Exercise number -> its text (hint included), from the page's '## Exercises' section."""
    section = text[text.index("## Exercises"):]
    section = section.split("```{code-cell}")[0]
    items = re.split(r"(?m)^(\d+)\. ", section)[1:]
    return {int(number): body for number, body in zip(items[::2], items[1::2], strict=True)}


def _answer_cell(text: str) -> tuple[str, str]:
    """(tags line, source) of the code cell that defines ``exercise_answers``."""
    for match in re.finditer(r"```\{code-cell\} ipython3\n(.*?)```", text, re.DOTALL):
        cell = match.group(1)
        if "exercise_answers = {}" in cell:
            options = "\n".join(line for line in cell.splitlines() if line.startswith(":"))
            source = "\n".join(line for line in cell.splitlines() if not line.startswith(":"))
            return options, source
    return "", ""


def _answered(source: str) -> tuple[dict[int, ast.AST], set[int], list[ast.Assert]]:
    tree = ast.parse(source)
    answers, without, asserts = {}, set(), []
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign):
            for target in node.targets:
                if (isinstance(target, ast.Subscript) and isinstance(target.value, ast.Name)
                        and target.value.id == "exercise_answers"):
                    answers[ast.literal_eval(target.slice)] = node.value
                if isinstance(target, ast.Name) and target.id == "exercises_without_fixed_answer":
                    without = set(ast.literal_eval(node.value))
        if isinstance(node, ast.Assert):
            asserts.append(node)
    return answers, without, asserts


def test_the_book_has_chapters_with_exercises():
    assert {"book/sizing", "book/parameters", "book/architectures", "book/resnet"} <= set(
        _chapters())


@pytest.mark.parametrize("chapter", _chapters())
def test_every_exercise_has_a_hint_that_opens_on_demand(chapter):
    exercises = _exercises((REPO_ROOT / f"{chapter}.md").read_text())
    assert exercises and sorted(exercises) == list(range(1, len(exercises) + 1)), chapter
    for number, body in exercises.items():
        assert "{admonition} Hint" in body and ":class: dropdown" in body, (
            f"{chapter}, exercise {number} has no hint (an admonition 'Hint' of class dropdown)")


@pytest.mark.parametrize("chapter", _chapters())
def test_every_numeric_answer_is_computed_and_checked_in_a_hidden_cell(chapter):
    text = (REPO_ROOT / f"{chapter}.md").read_text()
    exercises = _exercises(text)
    options, source = _answer_cell(text)
    assert source, f"{chapter} has no code cell that defines exercise_answers"
    assert "remove-cell" in options, f"{chapter}: the answers cell must be tagged remove-cell"
    answers, without, asserts = _answered(source)
    assert set(answers) | without == set(exercises), (
        f"{chapter}: exercises {sorted(set(exercises) - set(answers) - without)} have neither an "
        f"answer nor a reason in exercises_without_fixed_answer; unknown numbers "
        f"{sorted((set(answers) | without) - set(exercises))}")
    assert not set(answers) & without, f"{chapter}: an exercise is both answered and exempt"
    for number in without:
        question = exercises[number].split("```{admonition}")[0]
        assert not NUMERIC_QUESTION.search(question), (
            f"{chapter}, exercise {number} asks for a number but is exempt from an answer")
    for number, value in answers.items():
        names = {f"exercise_answers[{number}]"} | (
            {value.id} if isinstance(value, ast.Name) else set())
        checked = [node for node in asserts
                   if any(name in ast.unparse(node) for name in names)]
        assert checked, f"{chapter}, exercise {number}: its answer is never checked by an assert"
