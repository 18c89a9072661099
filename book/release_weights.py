"""Publish the reference weights: copy each committed run's file to DIR under its release name.

    python book/release_weights.py DIR

writes ``googlenet_<run>-<SHA-256 prefix>.pt`` for each reference run of :class:`GoogLeNet_Weights`,
for upload to :data:`googlenet.weights.RELEASE`, and prints the hash prefixes to write into
``googlenet/weights.py``. Book production, not part of the installed package.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from googlenet.weights import REFERENCE_DIR, GoogLeNet_Weights, reference_run, sha256_of


def main(argv: list[str] | None = None) -> None:
    """Copy the committed reference files to ``DIR`` under their release names; print the hashes."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        raise SystemExit("usage: python book/release_weights.py DIR  (copies the release assets into DIR)")
    out = Path(args[0])
    out.mkdir(parents=True, exist_ok=True)
    for member in GoogLeNet_Weights:
        run = reference_run(member)
        if run is None:
            continue
        path = REFERENCE_DIR / run / "model.pt"
        prefix = sha256_of(path)[:8]
        target = out / f"googlenet_{run}-{prefix}.pt"
        shutil.copyfile(path, target)
        print(f"{member.name}: {prefix}  {target}")


if __name__ == "__main__":
    main()
