"""The package outside a clone: the wheel built, checked, installed into a fresh environment and used.

The fresh environment borrows this one's libraries (torch, torchvision...) through a ``.pth`` file that
names their folders, whose own ``.pth`` files are then not run: the editable install of this repository
stays invisible, and ``googlenet`` can only come from the wheel. Everything runs in a temporary folder,
with an empty torch hub cache; the reference weights come from a ``file://`` copy of the release.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest
import skimage.data
from PIL import Image

import googlenet
from googlenet.data import load_data
from googlenet.weights import GoogLeNet_Weights

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "book"))
from release_weights import main as release_assets  # noqa: E402  (book production, beside the book)

BOOK_PRODUCTION = ("gpu_report", "release_weights")  # book/'s commands, which the wheel must not hold
USE = """
import importlib.metadata, json, sys, torch
import googlenet
from googlenet import GoogLeNet_Weights, googlenet as build
out = {"package": googlenet.__file__, "requires": importlib.metadata.requires("googlenet"),
       "versions": [importlib.metadata.version("googlenet"), googlenet.__version__]}
for variant in ("paper", "torchvision"):
    for stem, size in (("imagenet", 96), ("small", 28)):
        model = build(num_classes=10, variant=variant, stem=stem, in_channels=1).eval()
        out[f"{variant}/{stem}"] = list(model(torch.zeros(1, 1, size, size)).shape)
model = build(weights=GoogLeNet_Weights.FASHION_MNIST_SMALL, progress=False).eval()
out["params"] = sum(p.numel() for p in model.parameters())
print(json.dumps(out))
"""


def _run(*args: str | Path, **kwargs) -> str:
    done = subprocess.run([str(a) for a in args], capture_output=True, text=True, **kwargs)
    assert done.returncode == 0, f"{' '.join(map(str, args[:4]))} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def dist(tmp_path_factory) -> Path:
    """``python -m build``: an sdist and a wheel, checked by twine."""
    out = tmp_path_factory.mktemp("dist")
    _run(sys.executable, "-m", "build", "--no-isolation", "--outdir", out, ROOT, cwd=out)
    _run(sys.executable, "-m", "twine", "check", "--strict", *sorted(out.iterdir()))
    return out


def test_the_wheel_holds_the_package_and_nothing_of_the_book(dist):
    (wheel,) = dist.glob("*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "googlenet/weights.py" in names and any(n.endswith("licenses/LICENSE") for n in names)
    runs = ("fashion_mnist_small", "fashion_mnist_96")
    calibrations = {f"googlenet/calibration/{run}.json" for run in runs}
    assert calibrations <= set(names)  # predict's "unlike the training images" line, outside a clone
    assert not [n for n in names if n.startswith(("book/", "tests/", "hubconf"))]
    assert not [n for n in names if Path(n).stem in BOOK_PRODUCTION], names
    assert all((ROOT / "book" / f"{module}.py").is_file() for module in BOOK_PRODUCTION)
    assert len(list(dist.glob("*.tar.gz"))) == 1


@pytest.fixture(scope="module")
def fresh(dist, tmp_path_factory) -> tuple[Path, dict[str, str], Path]:
    """A fresh virtual environment with the wheel installed, a working folder and its environment."""
    tmp = tmp_path_factory.mktemp("fresh")
    venv = tmp / "venv"
    _run(sys.executable, "-m", "venv", "--without-pip", venv)
    python = venv / "bin" / "python"
    site = _run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])").strip()
    libraries = dict.fromkeys(sysconfig.get_paths()[key] for key in ("purelib", "platlib"))
    (Path(site) / "libraries.pth").write_text("".join(f"{path}\n" for path in libraries))
    (wheel,) = dist.glob("*.whl")
    # no PYTHONPATH, for pip too: a source tree on it (with the build's googlenet.egg-info) would pass
    # for an installed googlenet, and pip would skip the wheel
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    _run(sys.executable, "-m", "pip", "--python", python, "install", "--quiet", "--no-deps", "--no-index",
         wheel, env=env)
    release = tmp / "release"
    release_assets([str(release)])
    work = tmp / "work"
    work.mkdir()
    env.update(TORCH_HOME=str(tmp / "torch"), GOOGLENET_WEIGHTS_URL=release.as_uri())
    return python, env, work


def test_the_installed_wheel_builds_and_loads_weights_outside_a_clone(fresh):
    python, env, work = fresh
    out = json.loads(_run(python, "-c", USE, cwd=work, env=env).splitlines()[-1])
    assert Path(out["package"]).is_relative_to(python.parents[1]), out["package"]
    shapes = {k: v for k, v in out.items() if "/" in k}
    assert shapes == {f"{v}/{s}": [1, 10] for v in ("paper", "torchvision") for s in ("imagenet", "small")}
    assert out["params"] == GoogLeNet_Weights.FASHION_MNIST_SMALL.meta["num_params"]
    assert out["versions"] == [googlenet.__version__] * 2  # one source: pyproject reads the package's
    core = [r for r in out["requires"] if "extra ==" not in r]
    assert {r.split(">")[0].split("=")[0] for r in core} == {"torch", "torchvision", "tqdm", "matplotlib",
                                                             "numpy", "pillow"}
    cached = Path(env["TORCH_HOME"]) / "hub" / "checkpoints"
    assert [p.name for p in cached.iterdir()] == [Path(GoogLeNet_Weights.FASHION_MNIST_SMALL.url).name]


def test_predict_on_an_image_file_outside_a_clone(fresh):
    """A Fashion-MNIST test image that the committed evaluation gets right by a wide margin."""
    python, env, work = fresh
    evaluation = json.loads((ROOT / "book/results/fashion_mnist_small/evaluation.json").read_text())
    test = load_data("fashion_mnist").test
    sure = [i for i, (p, m) in enumerate(zip(evaluation["predictions"], evaluation["margins"], strict=True))
            if p == int(test.labels[i]) and m > 3]
    image, photo = work / "item.png", work / "astronaut.png"
    Image.fromarray(test.images[sure[0], 0].numpy()).save(image)
    Image.fromarray(skimage.data.astronaut()).save(photo)
    out = _run(python, "-m", "googlenet.predict", image, photo, "--weights", "FASHION_MNIST_SMALL",
               "--device", "cpu", cwd=work, env=env)
    assert out.splitlines()[6] == str(photo) and out.splitlines()[12].startswith("  unlike the Fashion-MNIST")
    first = out.splitlines()[1].split()
    assert first[0] == "1." and " ".join(first[1:-1]) == GoogLeNet_Weights.FASHION_MNIST_SMALL.meta[
        "categories"][int(test.labels[sure[0]])], out
