"""The confusion matrix Dagster shows inline: a real PNG that says the counts it was given."""

import base64
import io
import random

import pytest
from PIL import Image

from iris_assets.core.confusion_thumbnail import (
    CELL,
    DARK,
    INLINE_LIMIT,
    LEFT,
    LIGHT,
    TOP,
    compact,
    confusion_image_markdown,
    confusion_thumbnail,
)

GOOD = [[17, 0, 0], [0, 14, 3], [0, 1, 15]]


def image(confusion) -> Image.Image:
    return Image.open(io.BytesIO(confusion_thumbnail(confusion)))


def cell(picture: Image.Image, i: int, j: int) -> Image.Image:
    x, y = LEFT + j * CELL, TOP + i * CELL
    return picture.crop((x, y, x + CELL - 1, y + CELL - 1))


def test_it_is_a_small_png_of_three_by_three_cells():
    picture = image(GOOD)
    assert picture.format == "PNG" and picture.size == (LEFT + 3 * CELL, TOP + 3 * CELL)
    assert len(confusion_thumbnail(GOOD)) < 750


def test_cells_above_half_the_largest_count_are_dark():
    picture = image(GOOD)
    shades = [[cell(picture, i, j).getpixel((1, 1)) for j in range(3)] for i in range(3)]
    assert shades == [[DARK, LIGHT, LIGHT], [LIGHT, DARK, LIGHT], [LIGHT, LIGHT, DARK]]


def test_each_cell_draws_its_own_count():
    """Changing one count changes that cell's pixels and no other cell's."""
    changed = [row[:] for row in GOOD]
    changed[1][2] = 4
    before, after = image(GOOD), image(changed)
    differs = {
        (i, j)
        for i in range(3)
        for j in range(3)
        if cell(before, i, j).tobytes() != cell(after, i, j).tobytes()
    }
    assert differs == {(1, 2)}
    # Equal counts are drawn alike, so the digits are drawn from the counts, not positions.
    assert cell(before, 0, 1).tobytes() == cell(before, 2, 0).tobytes()


def test_the_markdown_is_only_an_image_that_dagster_shows_inline():
    markdown = confusion_image_markdown(GOOD)
    prefix = "![confusion matrix](data:image/png;base64,"
    assert markdown.startswith(prefix) and markdown.endswith(")")
    assert base64.b64decode(markdown[len(prefix) : -1]) == confusion_thumbnail(GOOD)
    assert len(markdown) < INLINE_LIMIT


def random_matrix(generator: random.Random, total: int) -> list[list[int]]:
    cuts = sorted(generator.randint(0, total) for _ in range(8))
    parts = [b - a for a, b in zip([0, *cuts], [*cuts, total], strict=True)]
    return [parts[0:3], parts[3:6], parts[6:9]]


def test_an_iris_sized_evaluation_stays_inline_however_the_model_does():
    """The held-out split is about a third of 150 flowers; up to 75 never hide behind a link."""
    generator = random.Random(12)
    for total in (50, 75):
        for _ in range(300):
            matrix = random_matrix(generator, total)
            assert len(confusion_image_markdown(matrix)) < INLINE_LIMIT, matrix


REVIEWED = [[80, 92, 37], [15, 95, 42], [92, 91, 64]]  # its PNG made 1,007 characters


def shown_counts(markdown: str) -> list[list[str]] | None:
    """The counts a table fallback shows, or None when the Markdown is the image."""
    if markdown.startswith("![confusion matrix](data:image/png;base64,"):
        Image.open(io.BytesIO(base64.b64decode(markdown.split(",", 1)[1][:-1]))).verify()
        return None
    lines = markdown.splitlines()
    assert lines[0] == "| true\\pred | set | ver | vir |" and lines[1] == "|---|---:|---:|---:|"
    return [[part.strip() for part in line.strip("|").split("|")][1:] for line in lines[2:]]


def assert_inline(matrix) -> None:
    markdown = confusion_image_markdown(matrix)
    assert len(markdown) < INLINE_LIMIT, (len(markdown), matrix)
    table = shown_counts(markdown)
    if table is not None:
        assert table == [[compact(value) for value in row] for row in matrix]


def test_any_three_by_three_matrix_stays_inline_as_an_image_or_a_table():
    """Any counts: Dagster must never hide the matrix behind "[Show Markdown]"."""
    generator = random.Random(1007)
    assert_inline(REVIEWED)
    extremes = [
        [[0] * 3] * 3,
        [[10**16] * 3] * 3,
        [[10**16, 0, 1], [999, 1000, 9950], [999_500, 7, 10**12]],
        [[generator.randint(0, 10**16) for _ in range(3)] for _ in range(3)],
    ]
    for matrix in extremes:
        assert_inline(matrix)
    for _ in range(400):
        scale = 10 ** generator.randint(1, 16)
        assert_inline([[generator.randint(0, scale) for _ in range(3)] for _ in range(3)])
    for total in (150, 1000, 10_000_000):
        for _ in range(50):
            assert_inline(random_matrix(generator, total))


def test_the_reviewed_matrix_falls_back_to_a_table_of_its_counts():
    assert shown_counts(confusion_image_markdown(REVIEWED)) == [
        ["80", "92", "37"],
        ["15", "95", "42"],
        ["92", "91", "64"],
    ]


@pytest.mark.parametrize(
    ("count", "label"),
    [(0, "0"), (999, "999"), (1000, "1.0k"), (9950, "10k"), (999_500, "1.0M"), (10**16, "1e16")],
)
def test_a_count_too_wide_for_its_cell_is_abbreviated_never_cut(count, label):
    assert compact(count) == label


def test_no_count_is_wider_than_four_characters():
    for exponent in range(17):
        for mantissa in (1, 4.99, 9.949, 9.95, 9.999):
            assert len(compact(int(mantissa * 10**exponent))) <= 4


@pytest.mark.parametrize(
    "garbage", [[], [[1, 2], [3, 4]], [[1, 2, 3], [4, 5, 6]], [[1, 2, 3]] * 2 + [[1, 2]]]
)
def test_a_matrix_that_is_not_three_by_three_is_refused(garbage):
    with pytest.raises(ValueError, match="3x3"):
        confusion_thumbnail(garbage)
