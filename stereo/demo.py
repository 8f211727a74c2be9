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


DSEC_DATA = ["--data", str(paths.DEFAULT_PREPARED_DSEC_DIR)]
DSEC_CONFIG = ["--config", "configs/dsec_synthetic.yaml"]
DSEC_CHECKPOINT = ["--checkpoint", str(paths.DEFAULT_TRAIN_DSEC_DIR / paths.BEST_CHECKPOINT_NAME)]
DSEC_ANN_CHECKPOINT = ["--ann-checkpoint", str(paths.DEFAULT_TRAIN_DSEC_ANN_DIR / paths.BEST_CHECKPOINT_NAME)]
DSEC_TEST_SEQUENCE = paths.DEFAULT_SYNTHETIC_DSEC_DIR / "test" / "zurich_city_synthetic_t"

# `make demo-dsec`: the same chain on the synthetic DSEC-layout recording (480 x 640), ending in a
# benchmark submission. The SNN and its twin are fine-tuned from the pretrained synthetic-MVSEC weights.
DSEC_STEPS: list[tuple[str, list[str], list[Path]]] = [
    ("prepare the synthetic DSEC-layout recording", ["data_tools/prepare_dsec.py"],
     [paths.DEFAULT_SYNTHETIC_DSEC_DIR, paths.DEFAULT_PREPARED_DSEC_DIR]),
    ("fine-tune the pretrained SNN on it", ["stereo/train.py", *DSEC_DATA, *DSEC_CONFIG, "--init", PRETRAINED_SNN_ARG,
                                            "--out", str(paths.DEFAULT_TRAIN_DSEC_DIR)],
     [paths.DEFAULT_TRAIN_DSEC_DIR]),
    ("fine-tune the pretrained ANN twin on it", ["stereo/train.py", *DSEC_DATA, *DSEC_CONFIG, "--ann", "--init",
                                                 PRETRAINED_ANN_ARG, "--out", str(paths.DEFAULT_TRAIN_DSEC_ANN_DIR)],
     [paths.DEFAULT_TRAIN_DSEC_ANN_DIR]),
    ("evaluate (MVSEC and DSEC metrics, pictures; twin, SGBM and constant baselines)",
     ["eval/disparity.py", "--viz", "--baselines", "sgbm,ann,constant", "--mask", "both", *DSEC_DATA, *DSEC_CONFIG,
      *DSEC_CHECKPOINT, *DSEC_ANN_CHECKPOINT, "--out", str(paths.DEFAULT_EVAL_DSEC_DIR)],
     [paths.DEFAULT_EVAL_DSEC_DIR]),
    ("energy report at 480 x 640", ["eval/energy.py", *DSEC_DATA, *DSEC_CONFIG, *DSEC_CHECKPOINT,
                                    *DSEC_ANN_CHECKPOINT, "--metrics",
                                    str(paths.DEFAULT_EVAL_DSEC_DIR / "metrics.json"), "--out",
                                    str(paths.DEFAULT_ENERGY_DSEC_DIR)],
     [paths.DEFAULT_ENERGY_DSEC_DIR]),
    ("point cloud (DSEC intrinsics)", ["eval/pointcloud.py", "--index", "0", *DSEC_DATA, *DSEC_CHECKPOINT,
                                       "--out", str(paths.DEFAULT_POINTCLOUD_DSEC_DIR)],
     [paths.DEFAULT_POINTCLOUD_DSEC_DIR]),
    ("benchmark submission (checked like DSEC's checker)", ["eval/dsec_submission.py"],
     [paths.DEFAULT_DSEC_SUBMISSION_DIR]),
    ("inference on the raw test sequence folder", ["stereo/infer.py", *DSEC_CHECKPOINT, "--dsec-sequence",
                                                   str(DSEC_TEST_SEQUENCE), "--max-windows", "4", "--png",
                                                   "--out", str(paths.DEFAULT_INFER_DSEC_DIR)],
     [paths.DEFAULT_INFER_DSEC_DIR]),
]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto", help="device for search, training and evaluation")
    parser.add_argument("--dataset", choices=("mvsec", "dsec"), default="mvsec",
                        help="which synthetic recording's chain to run (make demo / make demo-dsec)")
    args = parser.parse_args(argv)
    root = Path(__file__).resolve().parent.parent
    steps = DSEC_STEPS if args.dataset == "dsec" else STEPS
    timings = []
    for index, (title, command, _) in enumerate(steps, 1):
        print(f"\n=== [{index}/{len(steps)}] {title}: python {' '.join(command)}", flush=True)
        needs_device = command[0].startswith(("stereo/", "eval/"))
        extra = ["--device", args.device] if needs_device else []
        start = time.perf_counter()
        result = subprocess.run([sys.executable, *command, *extra], cwd=root)
        if result.returncode != 0:
            print(f"\ndemo stopped: step '{title}' failed with exit code {result.returncode}", file=sys.stderr)
            return result.returncode
        timings.append(time.perf_counter() - start)
    print("\n=== demo finished; outputs:")
    for (title, _, outputs), seconds in zip(steps, timings):
        where = ", ".join(str(root / p) for p in outputs)
        print(f"  {title:<66} {seconds:7.1f} s  -> {where}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
