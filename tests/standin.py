"""An offline stand-in for the places readers run the book: a fresh Colab runtime, the published build.

Three pieces, each usable alone:

- :class:`FashionMirror`, a local HTTP server that answers as torchvision's Fashion-MNIST mirror does.
  The mirror is plain HTTP, so ``http_proxy=http://127.0.0.1:PORT`` sends torchvision's own download
  code to it unchanged. It serves Debian's ``dataset-fashion-mnist`` files, which Debian recompressed:
  their MD5 sums differ from the ones torchvision checks.
- :func:`site_folder`, a folder for ``PYTHONPATH`` whose ``sitecustomize`` makes *that* runtime, and
  only it, expect Debian's MD5 sums (and, for Colab, import a stand-in ``google.colab`` module).
- :func:`plant_imagenet_weights`, a state dict of torchvision's GoogLeNet written into a torch hub
  cache under the name of torchvision's ImageNet file, so that the cells that run when ImageNet
  weights are present run offline. The weights are random: those cells may assert only what holds
  for any weights.

``python tests/standin.py build [OUT]`` rehearses the published book's build (the workflow's
``jupyter-book build -W -n --keep-going .``) in that stand-in: no Debian dataset, Fashion-MNIST
downloaded from the local mirror, the ImageNet file planted in an empty torch hub cache.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.server
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from urllib.parse import urlsplit

from googlenet.data import DEBIAN_FASHION_MNIST as DEBIAN
from googlenet.data import OFFLINE_COPY_VARIABLE  # set empty, it hides Debian's copy

ROOT = Path(__file__).resolve().parents[1]
IMAGENET_FILE = "googlenet-1378be20.pth"  # torchvision's GoogLeNet_Weights.IMAGENET1K_V1 file name


class FashionMirror:
    """A local stand-in for torchvision's Fashion-MNIST mirror, serving Debian's files by name.

    Used as a context manager; ``proxy`` is the value for ``http_proxy``, ``requests`` the paths
    asked for so far.
    """

    def __init__(self, source: Path = DEBIAN) -> None:
        self.source = source
        self.requests: list[str] = []
        mirror = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                name = Path(urlsplit(self.path).path).name  # a proxy request carries the whole URL
                mirror.requests.append(self.path)
                file = mirror.source / name
                if not name.endswith(".gz") or not file.is_file():
                    self.send_error(404)
                    return
                body = file.read_bytes()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                with contextlib.suppress(ConnectionError):  # a client that hung up early
                    self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.proxy = f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> FashionMirror:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def debian_md5s(source: Path = DEBIAN) -> dict[str, str]:
    """The MD5 sum of each of Debian's gzipped Fashion-MNIST files, by file name."""
    return {p.name: hashlib.md5(p.read_bytes()).hexdigest() for p in sorted(source.glob("*.gz"))}


SITECUSTOMIZE = '''"""This runtime stands in for another: {what}."""
import importlib.abc
import importlib.util
import sys

DEBIAN_MD5 = {md5s!r}


class _ExpectDebiansFiles(importlib.abc.MetaPathFinder):
    """When torchvision's MNIST module loads, make FashionMNIST expect Debian's recompressed files."""

    def find_spec(self, name, path, target=None):
        if name != "torchvision.datasets.mnist":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        run = spec.loader.exec_module

        def exec_module(module):
            run(module)
            module.FashionMNIST.resources = [
                (file, DEBIAN_MD5.get(file, md5)) for file, md5 in module.FashionMNIST.resources]

        spec.loader.exec_module = exec_module
        return spec


sys.meta_path.insert(0, _ExpectDebiansFiles())
'''


def site_folder(folder: Path, *, colab: bool) -> Path:
    """A folder for ``PYTHONPATH``: Debian's MD5 sums expected, and ``google.colab`` if ``colab``."""
    folder.mkdir(parents=True, exist_ok=True)
    what = "Colab, offline" if colab else "a machine that downloads, offline"
    text = SITECUSTOMIZE.format(what=what, md5s=debian_md5s())
    if colab:
        (folder / "google" / "colab").mkdir(parents=True, exist_ok=True)
        (folder / "google" / "colab" / "__init__.py").write_text('"""Stands in for Colab\'s module."""\n')
        text += "\nimport google.colab  # as a Colab kernel has it\n"
    (folder / "sitecustomize.py").write_text(text)
    return folder


def plant_imagenet_weights(torch_home: Path) -> Path:
    """Write a random torchvision GoogLeNet state dict as the ImageNet file of torch's hub cache."""
    import torch
    import torchvision

    path = torch_home / "hub" / "checkpoints" / IMAGENET_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    model = torchvision.models.googlenet(weights=None, aux_logits=True, init_weights=True)
    torch.save(model.state_dict(), path)
    return path


def offline_env(base: dict[str, str], mirror: FashionMirror, **extra: str) -> dict[str, str]:
    """``base`` without proxies or data locations of its own, downloads going to ``mirror``, Debian's copy
    out of reach; then ``extra``."""
    drop = {"http_proxy", "https_proxy", "no_proxy", "all_proxy", "GOOGLENET_DATA", "TORCH_HOME",
            "PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "VIRTUAL_ENV"}
    env = {k: v for k, v in base.items() if k.lower() not in {d.lower() for d in drop}}
    env.update(http_proxy=mirror.proxy, HTTP_PROXY=mirror.proxy, **{OFFLINE_COPY_VARIABLE: ""})
    env.update(extra)
    return env


def rehearse_build(out: Path) -> int:
    """The published build, offline: ``jupyter-book build -W -n --keep-going`` of a copy of this tree."""
    out.mkdir(parents=True, exist_ok=True)
    tree = out / "tree"
    if tree.exists():
        shutil.rmtree(tree)
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, check=True,
                           capture_output=True, text=True).stdout.split()
    for name in files:
        if (ROOT / name).is_file():
            (tree / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, tree / name)
    home, data = out / "home", out / "data"
    for folder in (home, data):
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir()
    planted = plant_imagenet_weights(home / ".cache" / "torch")
    with FashionMirror() as mirror:
        env = offline_env(dict(os.environ), mirror, HOME=str(home), GOOGLENET_DATA=str(data),
                          PYTHONPATH=str(site_folder(out / "site", colab=False)))
        print(f"rehearsing the published build in {tree} (mirror {mirror.proxy}, planted {planted.name})",
              flush=True)
        jb = Path(sys.executable).with_name("jupyter-book")
        done = subprocess.run([str(jb), "build", "-W", "-n", "--keep-going", "."], cwd=tree, env=env)
        downloads = [r for r in mirror.requests if r.endswith(".gz")]
    print(f"jupyter-book exited {done.returncode}; the mirror served {len(downloads)} downloads; "
          f"HTML in {tree / '_build' / 'html'}")
    return done.returncode


if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] != "build":
        sys.exit("usage: python tests/standin.py build [OUT]")
    target = Path(sys.argv[2]) if len(sys.argv) > 2 else Path(tempfile.mkdtemp(prefix="standin-build-"))
    sys.exit(rehearse_build(target.resolve()))
