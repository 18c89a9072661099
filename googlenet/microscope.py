"""A microscope for a trained GoogLeNet: for many channels of every layer, the image that excites
the channel most (feature visualisation), four diverse ones, its strongest and weakest test images,
how it responds to each class, and which branch it belongs to.

After OpenAI's Microscope and Distill's appendix of InceptionV1. Every render optimises the channel
before its ReLU (:func:`~googlenet.visualize.pre_relu`), and test images are ranked by that value
too, so that neither renders nor rankings tie at zero. A main render that stays below the
channel's strongest test image is tried again (:data:`RETRIES`: in pixel space, where the
1/f-scaled spectrum holds back the finest patterns; then from a dark and from a light start; then
with other seeds; last, from the strongest test image itself), and the highest is kept.

The command writes, into one folder, ``microscope.json`` and per layer two sprite sheets
(``<layer>-0.jpg``: a row of renders per channel; ``<layer>-0.png``: a row of 28-px test images per
channel), which a web page can show as the reader chooses::

    python -m googlenet.microscope --out book/results/microscope

Channels are chosen on training images and shown on test images: as many from each branch of a
module (the whole layer for conv1-conv3), and within it, sorted by class selectivity on the
training images, the channels at the middle of equal slices of that order, so that they spread
over its range. Interrupted, it resumes at the next layer when run again with the same settings.
"""

from __future__ import annotations

import io
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import torch
from PIL import Image
from torch import Tensor, nn
from tqdm.auto import tqdm

from .attribution import branch_widths
from .checkpoint import load_model
from .cli import Parser, checked, command_line, run_main
from .config import AT_LEAST_1
from .data import TensorImages, load_data
from .device import pick_device
from .errors import UserError
from .features import BRANCHES, inception_names
from .files import write_atomically, write_json
from .hooks import hooked
from .loaders import make_loader
from .provenance import provenance
from .visualize import activations, channel, diversity, pre_relu, render, selectivity
from .weights import reference_checkpoint

STEM_LAYERS = ("conv1", "conv2", "conv3")
DIVERSE = 4  # diverse renders per channel
STRONGEST, WEAKEST = 8, 4  # test images shown per channel
SHEET_ROWS = 64  # channels per sprite sheet (JPEG sides stay far below their 65,535-px limit)
# How a main render is made (Fourier or pixels, grey level of the start, seed added to --seed): first,
# then, in turn, for the channels still below their strongest test image.
RETRIES = ((True, 0.5, 0), (False, 0.5, 0), (True, 0.1, 0), (True, 0.9, 0), (True, 0.5, 2),
           (True, 0.5, 3))


def microscope_layers(model: nn.Module) -> list[str]:
    """The layers the microscope shows: the stem's three convolutions, then every Inception module."""
    return [*STEM_LAYERS, *inception_names(model)]


def groups(model: nn.Module, layer: str) -> list[tuple[str, range]]:
    """A layer's channels by branch: ``[("branch1", range(0, 64)), ...]``; one group for a convolution."""
    module = model.get_submodule(layer)
    if layer not in inception_names(model):
        return [("conv", range(module.conv.out_channels))]
    widths, out = branch_widths(module), []
    for name, width in zip(BRANCHES, widths, strict=True):
        start = out[-1][1].stop if out else 0
        out.append((name, range(start, start + width)))
    return out


def spread_by(values: Tensor, members: range, k: int) -> list[int]:
    """``k`` of ``members`` spread over the range of ``values``: sorted by value, the middle one of
    each of ``k`` equal slices (all of them, in order, when ``k`` covers the group)."""
    if k >= len(members):
        return list(members)
    order = values[members.start:members.stop].argsort()
    return [members.start + order[(2 * i + 1) * len(members) // (2 * k)].item() for i in range(k)]


@torch.no_grad()
def statistics(model: nn.Module, images: Tensor, layers: Sequence[str], batch_size: int = 250
               ) -> dict[str, dict[str, Tensor]]:
    """Per layer, for every image and channel: the mean before the ReLU (``"pre"``) and after it
    (``"post"``), and the largest value after it (``"peak"``); each (N, C), on the CPU."""
    names = {*layers, *map(pre_relu, layers)}
    parts: dict[str, dict[str, list[Tensor]]] = {layer: {"pre": [], "post": [], "peak": []}
                                                 for layer in layers}
    with hooked(model, {}):  # eval mode, restored after
        for x in images.split(batch_size):
            out = activations(model, x, names)
            for layer in layers:
                parts[layer]["pre"].append(out[pre_relu(layer)].mean(dim=(2, 3)).cpu())
                parts[layer]["post"].append(out[layer].mean(dim=(2, 3)).cpu())
                parts[layer]["peak"].append(out[layer].amax(dim=(2, 3)).cpu())
    return {layer: {k: torch.cat(v) for k, v in p.items()} for layer, p in parts.items()}


def mean_frequency(images: Tensor) -> Tensor:
    """Per image: the power-weighted mean spatial frequency (cycles per pixel), its mean removed."""
    power = torch.fft.rfft2(images - images.mean(dim=(-2, -1), keepdim=True)).abs().pow(2).sum(1)
    fy = torch.fft.fftfreq(images.shape[-2], device=images.device)[:, None]
    fx = torch.fft.rfftfreq(images.shape[-1], device=images.device)[None, :]
    radius = (fx**2 + fy**2).sqrt()
    return (power * radius).sum((-2, -1)) / power.sum((-2, -1)).clamp_min(1e-12)


def _sheet(tiles: Tensor) -> Image.Image:
    """Tiles (rows, columns, C, H, W) in [0, 1] as one image; grey ones dark where the value is high
    (as the book draws Fashion-MNIST), colour ones as they are."""
    rows, cols, c, h, w = tiles.shape
    grid = tiles.permute(0, 3, 1, 4, 2).reshape(rows * h, cols * w, c).clamp(0, 1)
    grid = 1 - grid[..., 0] if c == 1 else grid
    return Image.fromarray((grid * 255).round().to(torch.uint8).cpu().numpy())


def _save(image: Image.Image, path: Path, **options) -> None:
    buffer = io.BytesIO()
    image.save(buffer, format=path.suffix.lstrip(".").replace("jpg", "jpeg"), **options)
    write_atomically(path, lambda f: f.write(buffer.getvalue()))


def look_at_layer(model: nn.Module, layer: str, chosen: list[int], stats: dict[str, Tensor],
                  images: Tensor, labels: Tensor, classes: Sequence[str], *, mean: Sequence[float],
                  std: Sequence[float], size: int, steps: int, diverse_steps: int,
                  diversity_weight: float, seed: int) -> tuple[list[dict], Tensor, Tensor]:
    """Render the ``chosen`` channels of ``layer`` (one main and :data:`DIVERSE` diverse images each)
    and pick their test images (``images``, prepared for the model, with their ``stats`` and
    ``labels``); returns a record per channel, the renders and the test-image indices."""
    device = next(model.parameters()).device
    key = pre_relu(layer)
    pre, k = stats["pre"], len(chosen)
    m, s = (torch.tensor(v, device=device).view(1, -1, 1, 1) for v in (mean, std))

    def reach(images: Tensor) -> Tensor:
        with torch.no_grad(), hooked(model, {}):
            return activations(model, (images - m) / s, {key})[key].mean(dim=(2, 3)).cpu()

    def main_renders(picked: list[int], fourier: bool, start: float, another: int) -> Tensor:
        objective = sum(channel(key, chosen[i], batch=j) for j, i in enumerate(picked))
        return render(model, objective, batch=len(picked), size=size, mean=mean, std=std,
                      steps=steps, fourier=fourier, start=start, seed=seed + another)

    best = pre[:, chosen].max(0).values
    main = main_renders(list(range(k)), *RETRIES[0])
    reached = reach(main)[list(range(k)), chosen]
    how = [RETRIES[0]] * k
    # Ascent from grey can end below the strongest test image: where the 1/f-scaled spectrum holds
    # back the fine pattern an edge-like channel wants, where it climbs towards white while the
    # channel prefers black, or in a lesser optimum of a deep layer. Those channels are rendered
    # again, as RETRIES says, and the highest render is kept.
    for retry_with in RETRIES[1:]:
        retry = [i for i in range(k) if reached[i] <= best[i]]
        if not retry:
            break
        again = main_renders(retry, *retry_with)
        values = reach(again)[list(range(len(retry))), [chosen[i] for i in retry]]
        for j, (i, value) in enumerate(zip(retry, values, strict=True)):
            if value > reached[i]:
                main[i], reached[i], how[i] = again[j], value, retry_with
    # Last, the ascent starts from the channel's strongest test image itself (in pixel space).
    if retry := [i for i in range(k) if reached[i] <= best[i]]:
        tops = pre[:, [chosen[i] for i in retry]].argmax(0).to(device)
        objective = sum(channel(key, chosen[i], batch=j) for j, i in enumerate(retry))
        again = render(model, objective, batch=len(retry), size=size, mean=mean, std=std,
                       steps=steps, fourier=False, decorrelate=False, init=images[tops] * s + m,
                       seed=seed)
        values = reach(again)[list(range(len(retry))), [chosen[i] for i in retry]]
        for j, (i, value) in enumerate(zip(retry, values, strict=True)):
            if value > reached[i]:
                main[i], reached[i], how[i] = again[j], value, (False, "strongest test image", 0)
    scale = best.abs().clamp_min(1e-3)  # the channel's term in units of its strongest test image
    varied = sum(channel(key, c, batch=slice(DIVERSE * i, DIVERSE * (i + 1))) * (1 / unit.item())
                 + diversity_weight * diversity(key, batch=slice(DIVERSE * i, DIVERSE * (i + 1)))
                 for i, (c, unit) in enumerate(zip(chosen, scale, strict=True)))
    diverse = render(model, varied, batch=DIVERSE * k, size=size, mean=mean, std=std,
                     steps=diverse_steps, seed=seed + 1)
    reached_diverse = reach(diverse)
    frequency = mean_frequency(main)
    strongest = pre[:, chosen].topk(STRONGEST, dim=0).indices.T
    weakest = pre[:, chosen].topk(WEAKEST, dim=0, largest=False).indices.T
    sel = selectivity(stats["post"][:, chosen], labels, len(classes))
    records = []
    for i, c in enumerate(chosen):
        per_class = [stats["post"][labels == j, c].mean().item() for j in range(len(classes))]
        records.append({
            "channel": c, "render": reached[i].item(), "best_test": best[i].item(),
            "parametrisation": "fourier" if how[i][0] else "pixels", "start": how[i][1],
            "seed": seed + how[i][2],
            "diverse": [reached_diverse[DIVERSE * i + j, c].item() for j in range(DIVERSE)],
            "frequency": frequency[i].item(), "selectivity": sel[i].item(), "class_means": per_class,
            "dead": bool(stats["peak"][:, c].max() <= 0),
            "strongest": strongest[i].tolist(), "strongest_values": pre[strongest[i], c].tolist(),
            "weakest": weakest[i].tolist(), "weakest_values": pre[weakest[i], c].tolist(),
        })
    renders = torch.cat([main[:, None], diverse.view(k, DIVERSE, *diverse.shape[1:])], dim=1)
    return records, renders, torch.cat([strongest, weakest], dim=1)


def branch_summary(model: nn.Module, layer: str, stats: dict[str, Tensor], labels: Tensor,
                   num_classes: int) -> list[dict]:
    """Over every channel of each branch (not only the rendered ones): how many, how many never fire
    on a test image, and the median class selectivity of the others on the test images."""
    sel = selectivity(stats["post"], labels, num_classes)
    dead = stats["peak"].amax(0) <= 0
    out = []
    for name, members in groups(model, layer):
        live = [c for c in members if not dead[c]]
        out.append({"branch": name, "start": members.start, "stop": members.stop,
                    "dead": len(members) - len(live),
                    "median_selectivity": sel[live].median().item() if live else None})
    return out


def main(argv: list[str] | None = None) -> dict:
    """Write the microscope of a checkpoint's network (default: the book's 96-px reference network)."""
    parser = Parser(prog="python -m googlenet.microscope",
                    description="A browsable microscope of a trained GoogLeNet: for channels of every "
                                "layer, feature visualisations, strongest and weakest test images and "
                                "class responses, as sprite sheets and one JSON file.")
    parser.add_argument("--checkpoint", type=Path, default=None,
                        help="a checkpoint (default: the book's 96-px Fashion-MNIST reference network)")
    parser.add_argument("--out", type=Path, required=True, help="folder for microscope.json and the sheets")
    parser.add_argument("--channels", default="16",
                        help="channels per layer, spread over its branches, or 'all' (a GPU's job; "
                             "default: 16)")
    parser.add_argument("--steps", type=checked(int, AT_LEAST_1), default=512,
                        help="optimisation steps of each channel's main render (default: 512)")
    parser.add_argument("--diverse-steps", type=checked(int, AT_LEAST_1), default=128,
                        help="optimisation steps of the diverse renders (default: 128)")
    parser.add_argument("--train-images", type=checked(int, AT_LEAST_1), default=2000,
                        help="training images whose class selectivity chooses the channels (default: 2000)")
    parser.add_argument("--diversity", type=float, default=1.0,
                        help="weight of the diversity term, in units of the channel's strongest test "
                             "image (default: 1.0)")
    parser.add_argument("--layers", nargs="+", default=None,
                        help="only these layers (default: conv1-conv3 and every Inception module)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the renders (default: 0)")
    parser.add_argument("--device", default="auto", help="cpu, cuda, mps, or auto (default)")
    args = parser.parse_args(argv)
    if args.channels != "all" and not (args.channels.isdigit() and int(args.channels) > 0):
        parser.error(f"--channels {args.channels!r}: expected a whole number above 0, or 'all'")

    device = pick_device(args.device)
    checkpoint = args.checkpoint or reference_checkpoint("fashion_mnist_96")
    model, meta = load_model(checkpoint, map_location=device)
    model = model.to(device).eval()
    data = load_data(meta["dataset"], image_size=meta["image_size"], mean=meta["mean"], std=meta["std"])
    if not isinstance(data.test, TensorImages):
        raise UserError(f"the microscope shows in-memory datasets (Fashion-MNIST, CIFAR-10), not {data.name}")
    layers = args.layers or microscope_layers(model)
    if unknown := sorted(set(layers) - set(microscope_layers(model))):
        parser.error(f"--layers: {', '.join(unknown)} not among {', '.join(microscope_layers(model))}")
    classes = meta["classes"]
    settings = {"checkpoint": checkpoint.name, "channels": args.channels, "steps": args.steps,
                "diverse_steps": args.diverse_steps,
                "train_images": args.train_images, "diversity": args.diversity, "seed": args.seed}
    path = args.out / "microscope.json"
    record = {"settings": settings, "layers": {}}
    if path.exists():
        earlier = json.loads(path.read_text())
        if earlier.get("settings") == settings:
            record = earlier
    command = command_line("googlenet.microscope", sys.argv[1:] if argv is None else argv)
    record.update(provenance=provenance(command), classes=classes, image_size=meta["image_size"],
                  diverse=DIVERSE, strongest=STRONGEST, weakest=WEAKEST, sheet_rows=SHEET_ROWS)
    todo = [layer for layer in layers if layer not in record["layers"]]
    if not todo:
        print(f"every layer is already in {path}")
        return record

    train_x, train_y = next(iter(make_loader(data, "train", args.train_images, device, augment=False)))
    test_loader = make_loader(data, "test", 1000, device)
    test_x = torch.cat([x for x, _ in test_loader])
    test_y = data.test.labels.cpu()
    chose_on = statistics(model, train_x, todo)
    shown_on = statistics(model, test_x, todo)
    for layer in tqdm(todo, desc="layers", file=sys.stdout):
        per_branch = groups(model, layer)
        width = per_branch[-1][1].stop
        k = width if args.channels == "all" else min(int(args.channels), width)
        train_sel = selectivity(chose_on[layer]["post"], train_y.cpu(), len(classes))
        shares = [min(k // len(per_branch), len(g)) for _, g in per_branch]  # as even as widths allow
        for j in sorted(range(len(per_branch)), key=lambda j: -len(per_branch[j][1]))[:k - sum(shares)]:
            shares[j] += 1
        chosen, branch_of = [], {}
        for (name, members), n in zip(per_branch, shares, strict=True):
            picked = spread_by(train_sel, members, n)
            chosen += picked
            branch_of.update(dict.fromkeys(picked, name))
        channels, sheets = [], []
        for start in range(0, len(chosen), SHEET_ROWS):
            part = chosen[start:start + SHEET_ROWS]
            records, renders, shown = look_at_layer(
                model, layer, part, shown_on[layer], test_x, test_y, classes, mean=meta["mean"],
                std=meta["std"], size=meta["image_size"], steps=args.steps,
                diverse_steps=args.diverse_steps, diversity_weight=args.diversity, seed=args.seed)
            sheet = f"{layer}-{start // SHEET_ROWS}"
            _save(_sheet(renders), args.out / f"{sheet}.jpg", quality=80)
            originals = data.test.images[shown.flatten()].float() / 255  # as stored, 28 px
            _save(_sheet(originals.view(*shown.shape, *originals.shape[1:])),
                  args.out / f"{sheet}.png", optimize=True)
            for row, (r, c) in enumerate(zip(records, part, strict=True)):
                r.update(branch=branch_of[c], selectivity_train=train_sel[c].item(), sheet=sheet,
                         row=row)
            channels += records
            sheets.append(sheet)
        record["layers"][layer] = {
            "channels": channels, "sheets": sheets,
            "branches": branch_summary(model, layer, shown_on[layer], test_y, len(classes))}
        order = microscope_layers(model)  # the network's order, whatever order they were made in
        record["layers"] = dict(sorted(record["layers"].items(), key=lambda kv: order.index(kv[0])))
        beaten = sum(r["render"] > r["best_test"] for r in channels)
        tqdm.write(f"{layer}: {len(channels)} channels, {beaten} renders above their strongest test "
                   f"image", file=sys.stdout)
        write_json(record, path)
    return record


if __name__ == "__main__":
    run_main(main)
