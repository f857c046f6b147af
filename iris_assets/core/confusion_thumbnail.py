"""The confusion matrix as a tiny PNG inside Markdown, the form Dagster's UI shows as an image.

Dagster 1.13 renders a Markdown metadata value in the asset's metadata table only while it is
shorter than 1,000 characters (longer ones hide behind "[Show Markdown]"), and it strips raw HTML
but keeps a Markdown image with a ``data:`` URI. So the matrix is drawn with a bitmap font in a
four-colour palette: about 650 bytes of PNG, under 1,000 characters as Markdown. The full-size
figure goes to MLflow (``core/evaluation.confusion_png``). Busy digits compress worse: when a
matrix's PNG would pass the limit, the Markdown is a table of the same compact counts instead,
which Dagster also shows inline (at most ~150 characters for any counts).
"""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence

from iris_assets.core.schema import SPECIES_NAMES

INLINE_LIMIT = 1000  # characters of Markdown Dagster's UI still shows inline
ALT_TEXT = "confusion matrix"

CELL, LEFT, TOP = 28, 64, 16  # pixels: one cell, the row-label column, the header row
WHITE, BLACK, LIGHT, DARK = 0, 1, 2, 3  # palette indices
PALETTE = [255, 255, 255, 0, 0, 0, 222, 235, 247, 8, 69, 148]


def confusion_thumbnail(confusion: Sequence[Sequence[int]]) -> bytes:
    """PNG bytes: rows are the true species, columns the predicted, darker above half the max."""
    from PIL import Image, ImageDraw, ImageFont

    counts = [[int(value) for value in row] for row in confusion]
    size = len(SPECIES_NAMES)
    if len(counts) != size or any(len(row) != size for row in counts):
        raise ValueError(f"a confusion matrix is {size}x{size}, got {counts!r}")
    # Pillow >= 10.1 would otherwise pick an antialiased TrueType font: many colours, a big PNG.
    font = getattr(ImageFont, "load_default_imagefont", ImageFont.load_default)()
    image = Image.new("P", (LEFT + size * CELL, TOP + size * CELL), WHITE)
    image.putpalette(PALETTE + [0] * (768 - len(PALETTE)))
    draw = ImageDraw.Draw(image)
    draw.text((1, 3), "true\\pred", fill=BLACK, font=font)
    biggest = max(max(row) for row in counts) or 1
    for j, name in enumerate(SPECIES_NAMES):
        draw.text((LEFT + j * CELL + 5, 3), name[:3], fill=BLACK, font=font)
    for i, (name, row) in enumerate(zip(SPECIES_NAMES, counts, strict=True)):
        draw.text((2, TOP + i * CELL + 9), name, fill=BLACK, font=font)
        for j, value in enumerate(row):
            dark = value * 2 > biggest
            x, y = LEFT + j * CELL, TOP + i * CELL
            draw.rectangle([x, y, x + CELL - 1, y + CELL - 1], fill=DARK if dark else LIGHT)
            label = compact(value)
            left = x + (CELL - int(draw.textlength(label, font=font))) // 2
            draw.text((left, y + 8), label, fill=WHITE if dark else BLACK, font=font)
    out = io.BytesIO()
    image.save(out, format="PNG", optimize=True, bits=2)
    return out.getvalue()


def compact(count: int) -> str:
    """At most four characters, so a count fits its cell: 999, 1.2k, 12k, 1.0M, 12M."""
    if count < 1000:
        return str(count)
    for divisor, suffix in ((10**3, "k"), (10**6, "M"), (10**9, "G"), (10**12, "T")):
        value = count / divisor
        text = f"{value:.1f}{suffix}" if value < 9.95 else f"{value:.0f}{suffix}"
        if len(text) <= 4:
            return text
    return f"{count:.0e}".replace("+", "")


def confusion_table_markdown(confusion: Sequence[Sequence[int]]) -> str:
    """The same counts as a Markdown table: rows true species, columns predicted."""
    counts = [[int(value) for value in row] for row in confusion]
    header = "| true\\pred | " + " | ".join(name[:3] for name in SPECIES_NAMES) + " |"
    rows = [
        f"| {name} | " + " | ".join(compact(value) for value in row) + " |"
        for name, row in zip(SPECIES_NAMES, counts, strict=True)
    ]
    return "\n".join([header, "|---|---:|---:|---:|", *rows])


def confusion_image_markdown(confusion: Sequence[Sequence[int]]) -> str:
    """Markdown Dagster shows inline: the thumbnail as a ``data:image/png`` URI, else a table."""
    encoded = base64.b64encode(confusion_thumbnail(confusion)).decode("ascii")
    markdown = f"![{ALT_TEXT}](data:image/png;base64,{encoded})"
    if len(markdown) < INLINE_LIMIT:
        return markdown
    return confusion_table_markdown(confusion)
