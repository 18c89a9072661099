"""predict knows its limits: the committed calibrations flag images unlike Fashion-MNIST, not its own."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

from googlenet import GoogLeNet_Weights, googlenet
from googlenet.data import load_data
from googlenet.ood import Calibration, fit, load_calibration, pooled
from googlenet.predict import calibration_of, main, predict
from googlenet.weights import REFERENCE_DIR, reference_run

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "book"))
from calibrate_ood import fashion_mnist, prepared, unfamiliar_images  # noqa: E402  (book production)

REFERENCE = [GoogLeNet_Weights.FASHION_MNIST_SMALL, GoogLeNet_Weights.FASHION_MNIST_96]
TEST_SAMPLE = 2000  # of the 10,000 test images (all of them: book/calibrate_ood.py, in ood.json)
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def unfamiliar():
    return unfamiliar_images()


@pytest.mark.parametrize("weights", REFERENCE, ids=lambda w: w.name)
def test_unlike_images_are_flagged_and_test_images_are_not(weights, unfamiliar):
    """At least 95% of photographs (colour and grey) and digits; at most 1% of Fashion-MNIST's test images."""
    model, transform = googlenet(weights=weights).eval(), weights.transforms()
    calibration = calibration_of(weights)
    test = load_data("fashion_mnist").test.images
    sample = test[torch.randperm(len(test), generator=torch.Generator().manual_seed(0))[:TEST_SAMPLE]]
    sets = {"Fashion-MNIST test": fashion_mnist(transform, sample)}
    sets |= {name: prepared(transform, images) for name, images in unfamiliar.items()}
    flagged = {name: (calibration.strangeness(pooled(model, x, calibration.layers, logits=False)[1]) > 1)
               .double().mean().item() for name, x in sets.items()}
    assert flagged["Fashion-MNIST test"] <= 0.01, flagged
    assert all(rate >= 0.95 for name, rate in flagged.items() if name != "Fashion-MNIST test"), flagged
    assert {len(v) for v in unfamiliar.values()} == {72, 152, 1797}  # colour crops, grey crops, digits


@pytest.mark.parametrize("weights", REFERENCE, ids=lambda w: w.name)
def test_the_committed_rates_meet_the_bar_on_every_test_image(weights):
    record = json.loads((REFERENCE_DIR / reference_run(weights) / "ood.json").read_text())
    rates = record["rates"]
    assert {name: r["images"] for name, r in rates.items()} == {
        "Fashion-MNIST test": 10_000, "colour photographs": 72, "grey photographs": 152, "digits": 1797}
    assert rates["Fashion-MNIST test"]["flagged"] <= 0.01
    assert all(r["flagged"] >= 0.95 for name, r in rates.items() if name != "Fashion-MNIST test"), rates
    calibration = calibration_of(weights)
    assert record["quantile"] == calibration.quantile and calibration.images == (record["fit"],
                                                                                 record["held_out"])


def test_predict_says_when_an_image_is_unlike_the_training_images(tmp_path, capsys):
    """A colour photograph gets the line; a Fashion-MNIST test image does not (command and function)."""
    import skimage.data

    photo, item = tmp_path / "astronaut.png", tmp_path / "item.png"
    Image.fromarray(skimage.data.astronaut()).save(photo)
    Image.fromarray(load_data("fashion_mnist").test.images[0, 0].numpy()).save(item)
    results = main([str(photo), str(item), "--weights", "FASHION_MNIST_SMALL", "--device", "cpu"])
    lines = capsys.readouterr().out.splitlines()
    assert results[0].unfamiliar and not results[1].unfamiliar
    assert len(lines) == 13 and lines[7] == str(item)  # the photograph's 1 + 5 + 1 lines, then the item's
    assert lines[6].startswith("  unlike the Fashion-MNIST training images (strangeness ")
    assert lines[6].endswith("): the classes above are a forced choice")


def test_predict_without_a_calibration_says_nothing_of_it():
    weights = GoogLeNet_Weights.FASHION_MNIST_SMALL
    image = Image.new("L", (28, 28), 0)
    (result,) = predict(googlenet(weights=weights), weights.transforms(), weights.meta["categories"], [image])
    assert result.strangeness is None and not result.unfamiliar and len(result.top) == 5
    assert calibration_of(GoogLeNet_Weights.IMAGENET1K_V1) is None


def test_fit_flags_the_held_out_quantile_and_round_trips_through_json():
    g = torch.Generator().manual_seed(0)
    labels, others = torch.arange(4000) % 4, torch.arange(1000) % 4
    features = {"conv3": torch.randn(4000, 6, generator=g, dtype=torch.float64) + labels[:, None]}
    held_out = {"conv3": torch.randn(1000, 6, generator=g, dtype=torch.float64) + others[:, None]}
    calibration = fit("toy", features, labels, held_out, quantile=0.99)
    assert (calibration.strangeness(held_out) > 1).sum().item() == 10
    again = Calibration.from_json(json.loads(json.dumps(calibration.to_json())))
    torch.testing.assert_close(again.strangeness(held_out), calibration.strangeness(held_out))
    assert load_calibration("no_such_run") is None
