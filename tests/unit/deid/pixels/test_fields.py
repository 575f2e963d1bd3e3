"""A PHI line's fields: measured from its ink, split where the gap is wider than between words."""

from __future__ import annotations

import numpy as np

from radstream.deid.pixels.fields import ink_fields, read_fields
from radstream.ocr.engine import Box
from tests.unit.deid.pixels.builders import engine, ink_box, text_mask


def banner(*parts: tuple[str, int]) -> tuple[np.ndarray, list[Box]]:
    """A dark banner with each (text, x) drawn at 13 px, grey on dark like the ultrasounds."""
    image = np.full((40, 600), 40, np.uint8)
    inks = []
    for text, x in parts:
        mask = text_mask(image.shape, text, (x, 8), 13)
        image[mask] = 220
        inks.append(ink_box(mask))
    return image, inks


class TestInkFields:
    def test_fields_are_split_at_wide_gaps_and_words_are_not(self) -> None:
        image, inks = banner(("DOB: 08/29/1951", 10), ("M", 150), ("CCHS CLEVELAND", 185))
        fields = ink_fields(image, Box(0, 0, 600, 40))
        assert len(fields) == 3
        for field, ink in zip(fields, inks, strict=True):
            assert ink.covered_by([field.box]) == 1.0
        assert fields[0].box.right < inks[1].x and fields[2].box.x > inks[1].right

    def test_the_fields_box_hugs_the_ink_not_the_loose_line_box(self) -> None:
        image, [ink] = banner(("ZZZ TEST PATIENT", 10))
        [field] = ink_fields(image, Box(0, 0, 600, 40))
        assert field.box.y >= 8 - 3 and field.box.bottom <= ink.bottom + 3

    def test_a_line_without_ink_has_no_fields(self) -> None:
        assert ink_fields(np.full((20, 50), 90, np.uint8), Box(0, 0, 50, 20)) == []


class TestReadingFieldsAlone:
    def test_each_field_is_read_on_its_own(self) -> None:
        image, _ = banner(("DOE JANE", 10), ("M", 110), ("4471 2209", 150))
        line = Box(0, 0, 600, 40)
        texts = read_fields(engine(), image, ink_fields(image, line), (0,))
        assert [t.replace(" ", "") for t in texts] == ["DOEJANE", "M", "44712209"]
