"""The evidence rules and the attention map on a hand-checkable grid: a 40x20 image seen by 2x4 cells of 10x10."""

import numpy as np
import pytest

from ocrheads.errors import OcrHeadsError
from ocrheads.geometry import (
    ImageTokens,
    Tile,
    box_tokens,
    crop_regions,
    point_tokens,
    spread_over_image,
    square_side,
    whole_image,
)

from ..evidence_truth import cells_by_pixels, cells_met, cells_sharing, positions

IMAGE = ImageTokens(image=0, size=(40, 20), tiles=(Tile(token_start=5, rows=2, cols=4, region=(0, 0, 40, 20)),))
# Box (8, 2, 22, 12): 14x10 = 140 px. Overlaps: cell (0,0) 2x8=16, (0,1) 10x8=80, (0,2) 2x8=16,
# (1,0) 2x2=4, (1,1) 10x2=20, (1,2) 2x2=4. Tokens are 5 + row * 4 + col.
BOX = (8, 2, 22, 12)


def test_any_overlap():
    assert box_tokens(BOX, IMAGE) == [5, 6, 7, 9, 10, 11]


def test_coverage_is_the_share_of_the_box():
    assert box_tokens(BOX, IMAGE, rule="coverage", threshold=0.1) == [5, 6, 7, 10]  # 16/140, 80/140, 20/140
    assert box_tokens(BOX, IMAGE, rule="coverage", threshold=0.5) == [6]
    # 0.15 separates share-of-box (only 80/140 passes) from share-of-cell (16/100 and 20/100 would pass too).
    assert box_tokens(BOX, IMAGE, rule="coverage", threshold=0.15) == [6]


def test_iou_is_overlap_over_union_with_the_cell():
    # cell (0,1): 80 / (140 + 100 - 80) = 0.5; cell (1,1): 20 / 220 = 0.09; cell (0,0): 16 / 224 = 0.07
    assert box_tokens(BOX, IMAGE, rule="iou", threshold=0.5) == [6]
    assert box_tokens(BOX, IMAGE, rule="iou", threshold=0.08) == [6, 10]


def test_a_tile_over_part_of_the_image_and_bad_boxes():
    crop = ImageTokens(0, (40, 20), (Tile(0, 1, 2, (20, 0, 40, 20)),))  # e.g. the right half as one crop
    assert box_tokens((0, 0, 19, 20), crop) == []
    assert box_tokens((25, 5, 35, 6), crop) == [0, 1]
    with pytest.raises(OcrHeadsError, match="outside its 40x20 image 0"):
        box_tokens((30, 0, 41, 5), IMAGE)
    with pytest.raises(OcrHeadsError, match="unknown evidence rule"):
        box_tokens(BOX, IMAGE, rule="centre")


def test_a_point_belongs_to_the_one_cell_that_holds_it_in_each_tile_that_sees_it():
    assert point_tokens((15, 12), IMAGE) == [10]  # row 1, col 1
    assert point_tokens((0, 0), IMAGE) == [5] and point_tokens((39.9, 19.9), IMAGE) == [12]
    assert point_tokens((20, 10), IMAGE) == box_tokens((20, 10, 20.5, 10.5), IMAGE) == [11]  # edges go right/down
    two_views = ImageTokens(0, (40, 20), (Tile(0, 1, 2, (20, 0, 40, 20)), Tile(2, 2, 4, (0, 0, 40, 20))))
    assert point_tokens((25, 5), two_views) == [0, 2 + 2] and point_tokens((5, 5), two_views) == [2]


def test_spread_over_image_puts_each_token_on_its_own_cell_and_keeps_the_total():
    size = (40, 20)
    whole = Tile(token_start=10, rows=2, cols=4, region=whole_image(size))
    one_hot = np.zeros(30)
    one_hot[10 + 6] = 1.0  # row 1, col 2: pixels x 20..29, y 10..19
    density = spread_over_image(ImageTokens(0, size, (whole,)), one_hot)
    assert density.shape == (20, 40)
    assert np.flatnonzero(density.any(0)).tolist() == list(range(20, 30))
    assert np.flatnonzero(density.any(1)).tolist() == list(range(10, 20))
    assert np.isclose(density.sum(), 1.0)
    crops = [Tile(2 + 2 * k, 1, 2, region) for k, region in enumerate(crop_regions(size, 1, 2))]
    tiled = ImageTokens(0, size, (*crops, Tile(6, 1, 1, whole_image(size))))
    mass = np.array([0, 0, 0.1, 0.2, 0.3, 0.1, 0.3])
    density = spread_over_image(tiled, mass)
    assert np.isclose(density.sum(), mass.sum())  # crops and the thumbnail see the same pixels and add up
    assert np.isclose(density[0, 0], 0.1 / 200 + 0.3 / 800)


def _paper_evidence(box, size, resized, token=28):
    """METHOD.md 2.2 as the paper's code does it: scale the corners to the resized page, int() them, weigh each
    28-px tile by 100 x its overlap / the box's area, keep tiles weighing more than 0.1."""
    (width, height), (new_w, new_h) = size, resized
    x0, y0 = int(box[0] * new_w / width), int(box[1] * new_h / height)
    x1, y1 = int(box[2] * new_w / width), int(box[3] * new_h / height)
    area = (x1 - x0) * (y1 - y0)
    found = []
    for index in range((new_h // token) * (new_w // token)):
        row, col = divmod(index, new_w // token)
        dx = max(0, min(x1, (col + 1) * token) - max(x0, col * token))
        dy = max(0, min(y1, (row + 1) * token) - max(y0, row * token))
        if area > 0 and 100 * dx * dy / area > 0.1:
            found.append(index)
    return found


def test_truncated_boxes_drop_the_token_row_the_paper_code_drops():
    page = ImageTokens(0, (560, 560), (Tile(0, 16, 16, (0, 0, 560, 560), (448, 448)),))  # 560 px shown at 448
    box = (365, 84, 388, 106)  # bottom edge 106 * 0.8 = 84.8 -> 84, a token boundary
    assert box_tokens(box, page) == [42, 43, 58, 59]  # rows 2-3, columns 10-11
    truncated = box_tokens(box, page, "coverage", 0.001, "truncate")
    assert truncated == [42, 43] == _paper_evidence(box, (560, 560), (448, 448))
    native = ImageTokens(0, (560, 560), (Tile(0, 20, 20, (0, 0, 560, 560), (560, 560)),))
    assert box_tokens(box, native, rounding="truncate") == box_tokens(box, native)
    with pytest.raises(OcrHeadsError, match="needs each tile's resized pixel size"):
        box_tokens(BOX, IMAGE, rounding="truncate")
    with pytest.raises(OcrHeadsError, match="unknown box rounding"):
        box_tokens(box, page, rounding="round")


@pytest.mark.parametrize("resized", [(448, 448), (336, 336), (448, 224)])
def test_truncation_equals_the_paper_code_on_random_boxes_where_exact_boxes_differ(resized):
    size, rng = (560, 560), np.random.default_rng(7)
    page = ImageTokens(0, size, (Tile(0, resized[1] // 28, resized[0] // 28, whole_image(size), resized),))
    differ = 0
    for _ in range(1000):
        x0, y0 = (int(v) for v in rng.integers(0, 540, 2))
        box = (x0, y0, x0 + int(rng.integers(1, 20)), y0 + int(rng.integers(1, 20)))
        paper = _paper_evidence(box, size, resized)
        assert box_tokens(box, page, "coverage", 0.001, "truncate") == paper, box
        differ += box_tokens(box, page, "coverage", 0.001) != paper
    assert 10 < differ < 200  # exact boxes keep rows and columns that truncation drops, now and then


# Layouts with what the hand-checked grid lacks: an odd column count, regions that start past 0 and end on
# fractions (InternVL's 3x2 crops of a 448x315 page, LLaVA's centre crop), a thumbnail after its crops.
LAYOUTS = {
    "odd": ImageTokens(0, (90, 50), (Tile(7, 5, 3, whole_image((90, 50)), (42, 70)),)),
    "crops": ImageTokens(
        0,
        (448, 315),
        (
            *(Tile(1 + 4 * k, 2, 2, region, (56, 56)) for k, region in enumerate(crop_regions((448, 315), 2, 3))),
            Tile(25, 2, 2, whole_image((448, 315)), (56, 56)),
        ),
    ),
    "centre": ImageTokens(
        0, (448, 315), (Tile(0, 4, 4, (62.379746835443036, 0.0, 379.9493670886076, 315.0), (56, 56)),)
    ),
    # LLaVA-NeXT-like: a base view, then an unpadded grid reaching past the page's sides, a newline after each row
    "newlines": ImageTokens(
        0,
        (300, 120),
        (
            Tile(0, 2, 2, whole_image((300, 120)), (28, 28)),
            Tile(4, 3, 7, (-3.5, 0.0, 303.5, 120.0), (98, 42), row_stride=8),
        ),
    ),
}


def _random_boxes(size: tuple[int, int], count: int, seed: int) -> list[tuple[float, ...]]:
    """Boxes on a quarter-pixel grid (exact in binary), from a quarter pixel to 80 px a side."""
    rng = np.random.default_rng(seed)
    boxes = []
    for _ in range(count):
        w, h = (int(rng.integers(1, min(320, 4 * side))) for side in size)
        x0, y0 = int(rng.integers(0, 4 * size[0] - w)), int(rng.integers(0, 4 * size[1] - h))
        boxes.append((x0 / 4, y0 / 4, (x0 + w) / 4, (y0 + h) / 4))
    return boxes


@pytest.mark.parametrize("layout", LAYOUTS)
def test_every_rule_equals_exact_fractions_on_random_boxes(layout):
    image = LAYOUTS[layout]
    for box in _random_boxes(image.size, 150, seed=len(layout)):
        assert box_tokens(box, image) == positions(image, lambda tile, box=box: cells_met(box, tile)), box
        for rule, threshold in (("coverage", 0.1), ("coverage", 0.3), ("iou", 0.05), ("iou", 0.2)):
            expected = positions(image, lambda tile, box=box, r=rule, t=threshold: cells_sharing(box, tile, r, t))
            assert box_tokens(box, image, rule, threshold) == expected, (box, rule, threshold)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_truncated_boxes_equal_counting_resized_pixels(layout):
    image = LAYOUTS[layout]
    for box in _random_boxes(image.size, 150, seed=10 + len(layout)):
        found = box_tokens(box, image, "coverage", 0.001, "truncate")
        assert found == positions(image, lambda tile, box=box: cells_by_pixels(box, tile, 0.001)), box


def test_rules_keep_a_share_equal_to_their_threshold():
    halves = (0, 0, 20, 10)  # half of the box in cell (0,0), half in (0,1)
    assert box_tokens(halves, IMAGE, "coverage", 0.5) == [5, 6]
    assert box_tokens((0, 0, 10, 5), IMAGE, "iou", 0.5) == [5]  # overlap 50 over a union of 100
    for box in (BOX, (9.5, 9.5, 12, 12)):  # the second meets cell (0,0) in 0.25 px^2
        any_overlap = box_tokens(box, IMAGE)
        assert box_tokens(box, IMAGE, "iou", 0.0) == any_overlap == box_tokens(box, IMAGE, "any", 0.5)
        assert box_tokens(box, IMAGE, "coverage", 0.0) == any_overlap == box_tokens(box, IMAGE, "coverage")


def test_a_box_must_have_area_inside_its_image():
    for box in [(5, 2, 5, 8), (5, 8, 9, 8), (5, 8, 9, 2), (9, 2, 5, 8), (-0.5, 2, 5, 8), (5, -0.5, 9, 8),
                (35, 2, 40.5, 8), (5, 2, 9, 20.5)]:  # fmt: skip
        with pytest.raises(OcrHeadsError, match="is empty or outside its 40x20 image 0"):
            box_tokens(box, IMAGE)
    assert box_tokens((0, 0, 40, 20), IMAGE) == list(range(5, 13))


def test_a_tile_a_box_truncates_to_nothing_in_does_not_hide_later_tiles():
    thumbnail = Tile(0, 2, 2, whole_image((448, 315)), (56, 56))  # 1/8 scale: a 3 px box truncates to 0 width
    crop = Tile(4, 2, 2, (0.0, 0.0, 224.0, 157.5), (448, 315))
    image = ImageTokens(0, (448, 315), (thumbnail, crop))
    assert box_tokens((120, 10, 123, 30), image, rounding="truncate") == [5]


def test_square_sides_and_crop_regions():
    assert square_side(16, "x") == 4 and square_side(1, "x") == 1 and square_side(1024, "x") == 32
    with pytest.raises(OcrHeadsError, match="x: 12 tokens do not form a square grid"):
        square_side(12, "x")
    assert crop_regions((300, 200), 2, 3) == [
        (0.0, 0.0, 100.0, 100.0), (100.0, 0.0, 200.0, 100.0), (200.0, 0.0, 300.0, 100.0),
        (0.0, 100.0, 100.0, 200.0), (100.0, 100.0, 200.0, 200.0), (200.0, 100.0, 300.0, 200.0),
    ]  # fmt: skip
    crops = crop_regions((448, 315), 2, 3)  # edges that are not whole pixels
    assert crops[1] == (448 / 3, 0.0, 2 * 448 / 3, 157.5) and crops[4] == (448 / 3, 157.5, 2 * 448 / 3, 315.0)
    image = LAYOUTS["crops"]
    assert image.positions() == list(range(1, 29))
    assert ImageTokens(0, (9, 9), (Tile(3, 1, 2, whole_image((9, 9))),)).positions() == [3, 4]


@pytest.mark.parametrize("layout", LAYOUTS)
def test_a_point_belongs_to_the_cell_a_tiny_box_at_it_meets(layout):
    image = LAYOUTS[layout]
    rng = np.random.default_rng(3)
    points = zip(rng.integers(0, 4 * image.size[0], 300) / 4, rng.integers(0, 4 * image.size[1], 300) / 4, strict=True)
    for x, y in points:
        dot = (x, y, x + 1 / 1024, y + 1 / 1024)
        assert point_tokens((x, y), image) == positions(image, lambda tile, dot=dot: cells_met(dot, tile)), (x, y)


def test_a_crop_spreads_its_mass_over_its_own_region_only():
    size = (40, 20)
    crops = [Tile(4 * k, 2, 2, region) for k, region in enumerate(crop_regions(size, 2, 2))]
    centre = Tile(16, 1, 1, (15.0, 5.0, 25.0, 10.0))  # a small middle crop: most pixels lie past its one cell
    image = ImageTokens(0, size, (*crops, centre))
    mass = np.arange(1, 18, dtype=np.float64)
    density = spread_over_image(image, mass)
    assert np.isclose(density.sum(), mass.sum())
    # pixel (x 12, y 17): crop 2 (x 0..20, y 10..20), its cell row 1, col 1 (10x5 px); the centre crop misses it
    assert np.isclose(density[17, 12], mass[8 + 3] / 50)
    assert np.isclose(density[7, 20], mass[1 * 4 + 2] / 50 + mass[16] / 50)  # crop 1's cell (1, 0) and the centre
    thirds = spread_over_image(ImageTokens(0, size, (Tile(0, 1, 3, whole_image(size)),)), np.array([1.0, 2.0, 3.0]))
    assert np.isclose(thirds[0, 0], 1.0 / (800 / 3))  # a cell of a third of the image: 266.67 px


def test_a_row_stride_leaves_out_the_tokens_that_end_each_row():
    tile = Tile(10, 2, 3, (0.0, 0.0, 30.0, 20.0), row_stride=4)  # each row of 3 followed by a newline
    image = ImageTokens(0, (30, 20), (tile,))
    assert image.positions() == [10, 11, 12, 14, 15, 16]
    assert box_tokens((12, 12, 25, 18), image) == [15, 16]
    assert point_tokens((25, 5), image) == [12] and point_tokens((1, 19), image) == [14]
    mass = np.zeros(18)
    mass[[13, 17]] = 5.0  # the newlines: they see no pixels
    mass[16] = 1.0
    density = spread_over_image(image, mass)
    assert density.sum() == pytest.approx(1.0)
    assert density[15, 25] > 0 and density[5, 25] == 0
