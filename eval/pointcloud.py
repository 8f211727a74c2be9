"""3D point clouds of one example from predicted and ground-truth disparity (SPEC §10).

    python eval/pointcloud.py [--checkpoint runs/train/best.pt] [--data data/prepared] [--split test]
        --index N [--color depth|events] [--pixels valid|all] [--show] [--out runs/pointcloud]

depth = f*B / disparity, back-projected with the rectified intrinsics of the prepared dataset.
Writes <stem>_pred.ply, <stem>_gt.ply (open3d), <stem>_pred.png, <stem>_gt.png and <stem>_pred_gt.png
(side by side), rendered without a display (open3d offscreen; matplotlib 3D scatter where open3d
cannot render, and it says so). --show opens open3d's viewer where a display exists.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np

from common import paths
from common.atomic import atomic_path
from common.errors import UserError, run_cli
from data_tools.constants import disparity_to_depth
from eval.cloud import (
    back_project,
    camera_pose,
    colours,
    display_available,
    render_png,
    scatter_png,
    write_ply,
)
from eval.evaluate import CountImages
from eval.runner import check_input_format, open_split, predict
from stereo.checkpoint import load_model_from_checkpoint
from stereo.config import add_config_arguments, start_cli

MIN_PRED_DISPARITY_PX = 1.0  # --pixels all: keep predictions nearer than f*B / 1 px (about 20 m)
RENDER_SIZE_PX = (640, 480)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Point clouds of one example: prediction and ground truth.")
    parser.add_argument("--checkpoint", type=Path, default=paths.DEFAULT_TRAIN_DIR / paths.BEST_CHECKPOINT_NAME)
    parser.add_argument("--data", type=Path, default=paths.DEFAULT_PREPARED_DIR, help="prepared dataset folder")
    parser.add_argument("--split", choices=("test", "val", "train"), default="test")
    parser.add_argument("--index", type=int, default=0, help="example index within the split")
    parser.add_argument("--color", choices=("depth", "events"), default="depth", help="colour points by depth or event count")
    parser.add_argument("--pixels", choices=("valid", "all"), default="valid",
                        help="valid: pixels with valid ground truth (both clouds comparable); all: every predicted pixel")
    parser.add_argument("--show", action="store_true", help="open an interactive viewer (needs a display)")
    parser.add_argument("--out", type=Path, default=paths.DEFAULT_POINTCLOUD_DIR)
    add_config_arguments(parser)
    return parser.parse_args(argv)


def render(ply: Path, png: Path, points: np.ndarray, rgb: np.ndarray, title: str, reference: np.ndarray) -> str:
    """Render with open3d in a guarded child process, else a matplotlib scatter; returns what was used.

    The view is set from ``reference`` (the ground-truth cloud) so that both pictures share it.
    """
    ok, how = render_png(ply, png, RENDER_SIZE_PX, camera_pose(reference))
    if ok:
        return how
    print(f"open3d could not render {png.name} ({how}); drew a matplotlib 3D scatter instead")
    limits = np.stack([np.percentile(reference, 1, axis=0), np.percentile(reference, 99, axis=0)])
    scatter_png(png, points, rgb, title, RENDER_SIZE_PX, limits)
    return "matplotlib 3D scatter"


def side_by_side(left_png: Path, right_png: Path, out_png: Path) -> None:
    images = [cv2.imread(str(p)) for p in (left_png, right_png)]
    height = min(i.shape[0] for i in images)
    images = [cv2.resize(i, (round(i.shape[1] * height / i.shape[0]), height)) for i in images]
    for image, text in zip(images, ("prediction", "ground truth")):
        cv2.putText(image, text, (10, 25), cv2.FONT_HERSHEY_SIMPLEX, 0.7, (0, 0, 0), 2, cv2.LINE_AA)
    with atomic_path(out_png) as tmp:
        _, data = cv2.imencode(".png", cv2.hconcat(images))
        tmp.write_bytes(data.tobytes())


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    _, device = start_cli(args)
    model, ckpt = load_model_from_checkpoint(args.checkpoint, device, "--checkpoint")
    dataset = open_split(args.data, args.split, int(ckpt["num_bins"]), ckpt["encoding"])
    check_input_format(dataset, ckpt, args.checkpoint)
    if not 0 <= args.index < len(dataset):
        raise UserError(f"--index {args.index}: the {args.split} split has examples 0..{len(dataset) - 1}")
    item = dataset[args.index]
    pred_px = predict(model, item["left"], item["right"], device)
    gt_px, valid = item["disp_px"].numpy(), item["valid"].numpy().astype(bool)
    focal, cx, cy = dataset.intrinsics
    fb = dataset.focal_baseline_px_m
    pred_mask = valid if args.pixels == "valid" else pred_px >= MIN_PRED_DISPARITY_PX
    if not pred_mask.any() or not valid.any():
        raise UserError(f"--index {args.index}: example has no {'valid ground-truth' if not valid.any() else 'predicted'} "
                        "pixels to back-project; choose another --index")
    depth_gt = disparity_to_depth(gt_px.astype(np.float64), fb)
    depth_pred = disparity_to_depth(pred_px.astype(np.float64), fb)
    if args.color == "events":
        events, _, _ = CountImages(args.data, args.split).pair(args.index, item)
        values = {"pred": events[pred_mask].astype(float), "gt": events[valid].astype(float)}
        vmin, vmax, cmap = 0.0, 255.0, "viridis"
    else:
        values = {"pred": depth_pred[pred_mask], "gt": depth_gt[valid]}
        low, high = np.percentile(depth_gt[valid], [1, 99])  # one scale for both clouds, from the ground truth
        vmin, vmax, cmap = float(low), float(high), "turbo_r"
    stem = f"{args.index:05d}_{item['sequence']}_{item['frame_index']}"
    clouds = {"pred": back_project(depth_pred, pred_mask, focal, cx, cy), "gt": back_project(depth_gt, valid, focal, cx, cy)}
    used = {}
    for name, points in clouds.items():
        rgb = colours(values[name], vmin, vmax, cmap)
        write_ply(args.out / f"{stem}_{name}.ply", points, rgb)
        title = f"{'prediction' if name == 'pred' else 'ground truth'}: {item['sequence']} frame {item['frame_index']}"
        used[name] = render(args.out / f"{stem}_{name}.ply", args.out / f"{stem}_{name}.png", points, rgb, title,
                            clouds["gt"])
    side_by_side(args.out / f"{stem}_pred.png", args.out / f"{stem}_gt.png", args.out / f"{stem}_pred_gt.png")
    print(f"{len(clouds['pred'])} predicted and {len(clouds['gt'])} ground-truth points "
          f"(median depth {np.median(clouds['pred'][:, 2]):.2f} m vs {np.median(clouds['gt'][:, 2]):.2f} m); "
          f"rendered with {used['pred']}")
    print(f"wrote {args.out}/{stem}_{{pred,gt}}.ply, {stem}_{{pred,gt}}.png and {stem}_pred_gt.png")
    if args.show:
        if display_available():
            import open3d as o3d

            o3d.visualization.draw_geometries([o3d.io.read_point_cloud(str(args.out / f"{stem}_pred.ply"))],
                                              window_name=f"{stem} prediction")
        else:
            print("--show: no display found (DISPLAY/WAYLAND_DISPLAY unset); open the PLY files in a viewer "
                  "on a machine with a screen, e.g. python -c \"import open3d as o3d; "
                  f"o3d.visualization.draw_geometries([o3d.io.read_point_cloud('{args.out / stem}_pred.ply')])\"")
    return 0


if __name__ == "__main__":
    run_cli(main)
