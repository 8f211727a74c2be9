"""`make demo`: the whole job on the synthetic recording, each step through its own entry script.

prepare -> short search -> retrain the found architecture and its ANN twin -> evaluate them with
pictures and baselines; then the pretrained weights of the synthetic benchmark (weights/) on the same
test frames, the energy report and the point cloud of the pretrained SNN. The demo's own runs are a
few steps long: they show the chain works, the pretrained ones what the networks learn. Every step is
the command a user would type, run with the defaults that chain the pipeline; the demo configs keep
it to minutes on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

from common import paths
from common.paths import PRETRAINED_ANN, PRETRAINED_SNN, REPOSITORY

# As a user types them: every step runs in the repository root.
PRETRAINED_SNN_ARG = str(PRETRAINED_SNN.relative_to(REPOSITORY))
PRETRAINED_ANN_ARG = str(PRETRAINED_ANN.relative_to(REPOSITORY))

STEPS: list[tuple[str, list[str], list[Path]]] = [
    ("prepare the synthetic recording", ["data_tools/prepare_mvsec.py"],
     [paths.DEFAULT_SYNTHETIC_RAW_DIR, paths.DEFAULT_PREPARED_DIR]),
    ("search a spiking architecture", ["stereo/search.py", "--config", "configs/search_demo.yaml"],
     [paths.DEFAULT_SEARCH_DIR]),
    ("retrain the found architecture (SNN)", ["stereo/train.py", "--config", "configs/demo.yaml"],
     [paths.DEFAULT_TRAIN_DIR]),
    ("retrain its ANN twin", ["stereo/train.py", "--config", "configs/demo.yaml", "--ann"],
     [paths.DEFAULT_TRAIN_ANN_DIR]),
    ("evaluate disparity and depth (with pictures and baselines)",
     ["eval/disparity.py", "--viz", "--baselines", "sgbm,ann", "--config", "configs/demo.yaml"],
     [paths.DEFAULT_EVAL_DIR]),
    ("evaluate the pretrained SNN and twin (weights/, same test frames)",
     ["eval/disparity.py", "--viz", "--baselines", "sgbm,ann", "--config", "configs/demo.yaml",
      "--checkpoint", PRETRAINED_SNN_ARG, "--ann-checkpoint", PRETRAINED_ANN_ARG,
      "--out", str(paths.DEFAULT_EVAL_PRETRAINED_DIR)],
     [paths.DEFAULT_EVAL_PRETRAINED_DIR]),
    ("energy report (pretrained SNN against its twin)",
     ["eval/energy.py", "--config", "configs/demo.yaml", "--checkpoint", str(PRETRAINED_SNN),
      "--ann-checkpoint", str(PRETRAINED_ANN), "--metrics", str(paths.DEFAULT_EVAL_PRETRAINED_DIR / "metrics.json")],
     [paths.DEFAULT_ENERGY_DIR]),
    ("point cloud (pretrained SNN)", ["eval/pointcloud.py", "--index", "0", "--checkpoint", PRETRAINED_SNN_ARG],
     [paths.DEFAULT_POINTCLOUD_DIR]),
]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto", help="device for search, training and evaluation")
    args = parser.parse_args(argv)
    root = Path(__file__).resolve().parent.parent
    timings = []
    for index, (title, command, _) in enumerate(STEPS, 1):
        print(f"\n=== [{index}/{len(STEPS)}] {title}: python {' '.join(command)}", flush=True)
        needs_device = command[0].startswith(("stereo/", "eval/"))
        extra = ["--device", args.device] if needs_device else []
        start = time.perf_counter()
        result = subprocess.run([sys.executable, *command, *extra], cwd=root)
        if result.returncode != 0:
            print(f"\ndemo stopped: step '{title}' failed with exit code {result.returncode}", file=sys.stderr)
            return result.returncode
        timings.append(time.perf_counter() - start)
    print("\n=== demo finished; outputs:")
    for (title, _, outputs), seconds in zip(STEPS, timings):
        where = ", ".join(str(root / p) for p in outputs)
        print(f"  {title:<66} {seconds:7.1f} s  -> {where}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
