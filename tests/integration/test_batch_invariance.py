"""Every scoring kind gives each sample the same results alone and in one padded batch of mixed lengths and page
counts, on the bundled demo model, where heads do hit: hits and misses both occur, and a sample whose gold answer
differs from what the model writes scores with c < 1; value = c x hit holds row by row."""

import numpy as np
import pytest
import torch
from PIL import Image

from ocrheads.attention import install
from ocrheads.data.generate import generate
from ocrheads.demo.run import BUNDLED_MODEL
from ocrheads.demo.task import DemoTask
from ocrheads.models import load_adapter
from ocrheads.scoring.causal import CausalOptions, score_causal_batch
from ocrheads.scoring.ocr import score_ocr_batch
from ocrheads.scoring.options import scoring_options
from ocrheads.scoring.retrieval import score_retrieval_batch
from ocrheads.scoring.table import CausalTable, EntryTable


@pytest.fixture(scope="module")
def demo():
    adapter = load_adapter(BUNDLED_MODEL)
    install(adapter.model)
    return adapter


@pytest.fixture(scope="module")
def demo_float64():
    """Causal scores are gradients through every layer: in float32, padding alone moves them by about 1e-4 (the
    order of float sums), so they are compared in float64, where a real padding error still shows at full size."""
    adapter = load_adapter(BUNDLED_MODEL)
    adapter.model.to(torch.float64)
    install(adapter.model)
    return adapter


def _samples(folder, modality: str) -> list:
    task = DemoTask()
    found = []
    for seed, length in ((1, 160), (2, 700), (3, 300)):
        [sample] = generate("passkey", folder / f"{modality}-{seed}", n=1, seed=seed, modality=modality,
                            style=task.style(0), fonts=task.fonts if modality == "image" else (), lengths=(length,),
                            digits=task.digits, intro=task.intro, progress=False)  # fmt: skip
        found.append(sample.model_copy(update={"id": f"passkey-seed{seed}"}))
    return found


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    folder = tmp_path_factory.mktemp("invariance")
    samples = _samples(folder, "image")
    pages = [[Image.open(folder / f"image-{seed}" / page).convert("RGB") for page in sample.pages]
             for seed, sample in zip((1, 2, 3), samples, strict=True)]  # fmt: skip
    assert len({len(item) for item in pages}) > 1  # mixed page counts
    wrong = samples[2].answer[:-1] + str((int(samples[2].answer[-1]) + 1) % 10)
    samples[2] = samples[2].model_copy(update={"answer": wrong})  # the model writes the real key: c < 1
    return samples, pages


def _per_sample(table) -> dict[str, dict[str, np.ndarray]]:
    arrays = table.arrays()
    return {
        sample: {name: values[arrays["sample"] == sample] for name, values in arrays.items()}
        for sample in set(arrays["sample"])
    }


def _assert_same(alone: dict, together: dict, floats: tuple[str, ...], tolerance: float = 1e-4) -> None:
    """Equal, floats within `tolerance`: in float32, padding moves an attention probability by up to about 2e-5."""
    assert alone.keys() == together.keys()
    for sample in alone:
        for column, values in alone[sample].items():
            if column in floats:
                np.testing.assert_allclose(together[sample][column], values, rtol=0, atol=tolerance,
                                           err_msg=f"{sample} {column}")  # fmt: skip
            else:
                assert np.array_equal(together[sample][column], values), (sample, column)


def _alone_and_together(score, samples, pages, new_table):
    together = new_table()
    score(samples, pages, together)
    alone = new_table()
    for sample, item in zip(samples, pages, strict=True):
        score([sample], [item], alone)
    return _per_sample(alone), _per_sample(together)


@pytest.mark.parametrize("answers", ["generated", "gold"])
def test_ocr_scores_are_the_same_alone_and_in_a_padded_batch(demo, images, answers):
    samples, pages = images
    options = scoring_options(answers=answers)
    alone, together = _alone_and_together(
        lambda s, p, table: score_ocr_batch(demo, s, p, options, table), samples, pages, lambda: EntryTable(*demo.grid)
    )
    _assert_same(alone, together, floats=("mass",))
    rows = {name: np.concatenate([found[name] for found in together.values()]) for name in ("hit", "c", "value")}
    assert rows["hit"].any() and not rows["hit"].all()  # hits and misses
    assert np.array_equal(rows["value"], rows["c"] * rows["hit"])
    if answers == "generated":
        digits = len(samples[2].answer)
        assert set(together[samples[2].id]["c"].tolist()) == {np.float32((digits - 1) / digits)}


def test_retrieval_scores_are_the_same_alone_and_in_a_padded_batch(demo, tmp_path):
    samples = _samples(tmp_path, "text")
    options = scoring_options(answers="gold")
    alone, together = _alone_and_together(
        lambda s, _, table: score_retrieval_batch(demo, s, options, table),
        samples,
        [[] for _ in samples],
        lambda: EntryTable(*demo.grid),
    )
    _assert_same(alone, together, floats=("mass",))
    hits = np.concatenate([found["hit"] for found in together.values()])
    assert hits.any() and not hits.all()


def test_causal_scores_are_the_same_alone_and_in_a_padded_batch(demo_float64, images):
    samples, pages = images
    options = CausalOptions(method="ig", steps=2, exact_top=4)
    alone, together = _alone_and_together(
        lambda s, p, table: score_causal_batch(demo_float64, s, p, options, table, None),
        samples,
        pages,
        lambda: CausalTable(*demo_float64.grid),
    )
    _assert_same(alone, together, floats=("estimate", "exact", "value"), tolerance=1e-6)
    measured = np.concatenate([found["exact"] for found in together.values()])
    assert 0 < (~np.isnan(measured)).sum() < len(measured)  # the two-stage search measured some heads
