"""Default locations that chain the synthetic pipeline (relative to the working directory).

prepare writes DEFAULT_PREPARED_DIR, search writes DEFAULT_SEARCH_DIR/architecture.json,
train writes DEFAULT_TRAIN_DIR/best.pt, and each later step reads the earlier one's default.
"""

from __future__ import annotations

from pathlib import Path

DEFAULT_SYNTHETIC_RAW_DIR = Path("data/synthetic")
DEFAULT_SYNTHETIC_DSEC_DIR = Path("data/synthetic_dsec")
DEFAULT_PREPARED_DIR = Path("data/prepared")
DEFAULT_PREPARED_DSEC_DIR = Path("data/prepared_dsec")
DEFAULT_SEARCH_DIR = Path("runs/search")
DEFAULT_TRAIN_DIR = Path("runs/train")
DEFAULT_TRAIN_ANN_DIR = Path("runs/train_ann")
DEFAULT_EVAL_DIR = Path("runs/eval")
DEFAULT_ENERGY_DIR = Path("runs/energy")
DEFAULT_POINTCLOUD_DIR = Path("runs/pointcloud")
DEFAULT_INFER_DIR = Path("runs/infer")
DEFAULT_EVAL_PRETRAINED_DIR = Path("runs/eval_pretrained")
# The DSEC chain's own folders (make demo-dsec), beside the MVSEC ones.
DEFAULT_TRAIN_DSEC_DIR = Path("runs/train_dsec")
DEFAULT_TRAIN_DSEC_ANN_DIR = Path("runs/train_dsec_ann")
DEFAULT_EVAL_DSEC_DIR = Path("runs/eval_dsec")
DEFAULT_ENERGY_DSEC_DIR = Path("runs/energy_dsec")
DEFAULT_POINTCLOUD_DSEC_DIR = Path("runs/pointcloud_dsec")
DEFAULT_INFER_DSEC_DIR = Path("runs/infer_dsec")
DEFAULT_DSEC_SUBMISSION_DIR = Path("runs/dsec_submission")
REPOSITORY = Path(__file__).resolve().parent.parent
SHIPPED_ARCHITECTURE = REPOSITORY / "configs" / "arch" / "spikedhs_mvsec.json"
# The pretrained checkpoints of the synthetic benchmark (weights/README.md is their model card).
PRETRAINED_SNN = REPOSITORY / "weights" / "snn_synthetic_bench.pt"
PRETRAINED_ANN = REPOSITORY / "weights" / "ann_synthetic_bench.pt"
# Output names inside a run folder, one place for every loop and reader.
BEST_CHECKPOINT_NAME = "best.pt"
LAST_CHECKPOINT_NAME = "last.pt"
EPOCH_CHECKPOINT_DIR = "epochs"  # epoch_NNN.pt, with train.keep_epoch_checkpoints
SEARCH_CHECKPOINT_NAME = "search_last.pt"
ARCHITECTURE_NAME = "architecture.json"
SEARCH_HISTORY_NAME = "search_history.json"
DGS_HISTORY_NAME = "dgs_history.json"
METRICS_CSV_NAME = "metrics.csv"
CURVE_CSV_NAME = "curve.csv"
TENSORBOARD_DIR_NAME = "tensorboard"
SEARCHED_ARCHITECTURE = DEFAULT_SEARCH_DIR / ARCHITECTURE_NAME


def default_architecture() -> Path:
    """The architecture found by stereo/search.py if present, else the shipped MVSEC one."""
    return SEARCHED_ARCHITECTURE if SEARCHED_ARCHITECTURE.is_file() else SHIPPED_ARCHITECTURE
