"""A random indoor scene of textured rectangles and a smooth hand-held trajectory, ray-cast per camera.

Each camera (left, right, raw or rectified rays) is rendered on its own by intersecting every
pixel's ray with every rectangle and keeping the nearest hit, so occlusions and disocclusions
between the two views are real. Textures are periodic noise tiles sampled with ``cv2.remap``
from one atlas; log intensity is what the event simulator consumes.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from data_tools.synthetic_camera import BLOCK_MARGIN_PX, MVSEC_CAMERA, Camera, rectified_rays

TILE = 128
SKY_LOG_INTENSITY = float(np.log(0.35))


@dataclass
class Patch:
    """A rectangle: centre, unit in-plane axes u, v, half extents (m), texel size (m), one- or two-sided."""

    center: np.ndarray
    u: np.ndarray
    v: np.ndarray
    half_u: float
    half_v: float
    texel_m: float
    two_sided: bool = True

    def __post_init__(self):
        self.normal = np.cross(self.u, self.v)
        self.corners = np.array([su * self.half_u * self.u + sv * self.half_v * self.v
                                 for su in (-1, 1) for sv in (-1, 1)])


def _rotation(yaw: float, pitch: float, roll: float) -> np.ndarray:
    """World-from-camera rotation (y down, z forward): yaw about y, pitch about x, roll about z."""
    cy, sy = np.cos(yaw), np.sin(yaw)
    cp, sp = np.cos(pitch), np.sin(pitch)
    cr, sr = np.cos(roll), np.sin(roll)
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rx = np.array([[1, 0, 0], [0, cp, -sp], [0, sp, cp]])
    rz = np.array([[cr, -sr, 0], [sr, cr, 0], [0, 0, 1]])
    return ry @ rx @ rz


def _periodic_noise(rng: np.random.Generator, correlation_texels: float) -> np.ndarray:
    """Zero-mean, unit-std noise tile that wraps around (Gaussian low-pass in the Fourier domain)."""
    freq = np.fft.fftfreq(TILE)
    radius2 = freq[:, None] ** 2 + freq[None, :] ** 2
    spectrum = np.fft.fft2(rng.standard_normal((TILE, TILE))) * np.exp(-2 * (np.pi * correlation_texels) ** 2 * radius2)
    tile = np.real(np.fft.ifft2(spectrum))
    return (tile - tile.mean()) / (tile.std() + 1e-9)


@dataclass
class Scene:
    patches: list[Patch]
    atlas: np.ndarray  # float32 (TILE + 1, P_total * (TILE + 1)) log intensity; last tile = sky
    trajectory: dict[str, np.ndarray]  # amplitudes, angular frequencies, phases of the motion, fixed tilt
    camera: Camera = MVSEC_CAMERA  # the rig the scene is rendered for (intrinsics, baseline)

    def pose(self, t_s: float) -> tuple[np.ndarray, np.ndarray]:
        """World-from-left-camera rotation and left camera centre at time t_s."""
        tr = self.trajectory
        wave = tr["amp"] * np.sin(tr["omega"] * t_s + tr["phase"])
        position = wave[:3] + tr["velocity"] * t_s
        return _rotation(*(wave[3:] + tr["tilt"])), position

    def camera_pose(self, t_s: float, side: str) -> tuple[np.ndarray, np.ndarray]:
        """Pose of either camera of the rectified rig (right = left + baseline along the camera x axis)."""
        rot, centre = self.pose(t_s)
        return (rot, centre + rot[:, 0] * self.camera.baseline) if side == "right" else (rot, centre)


def make_scene(rng: np.random.Generator, camera: Camera = MVSEC_CAMERA, scale: float = 1.0,
               tilt_rad: float = 0.0, speed: float = 1.0) -> Scene:
    """Back wall, floor, boxes, slanted and near panels, one nearly textureless panel (0.6–8 m at scale 1).

    ``scale`` multiplies every length (geometry and translation) and so divides every disparity: a
    wider rig sees the same scene at the same disparities with ``scale`` = its f·B over MVSEC's.
    ``tilt_rad`` pitches the rig up, for a narrower view that would otherwise miss the open sky;
    ``speed`` replays the same trajectory faster or slower (a longer focal length sees more motion)."""
    ex, ey, ez = np.eye(3)
    patches: list[Patch] = []
    contrasts: list[float] = []
    bases: list[float] = []

    def add(center, u, v, hu, hv, distance, contrast, two_sided=True):
        texel = distance * scale / camera.focal * rng.uniform(1.0, 2.0)  # 1-2 px at that distance
        patches.append(Patch(np.asarray(center, float) * scale, np.asarray(u, float), np.asarray(v, float),
                             hu * scale, hv * scale, texel, two_sided))
        contrasts.append(contrast)
        bases.append(rng.uniform(0.2, 0.8))

    wall_z = rng.uniform(6.5, 7.8)
    add([0, -0.85, wall_z], ex, ey, 7.0, 2.15, wall_z, rng.uniform(0.2, 0.35))  # top edge open: no depth above
    add([0, 1.3, (wall_z + 0.8) / 2], ex, ez, 7.0, (wall_z - 0.8) / 2, 3.0, rng.uniform(0.2, 0.35))  # floor
    for _ in range(4):  # boxes, drawn as their six one-sided faces
        size = rng.uniform(0.25, 0.6, 3)
        z = rng.uniform(1.6, 4.5)
        centre = np.array([rng.uniform(-0.45, 0.45) * z, 1.3 - size[1], z])
        yaw = rng.uniform(-0.8, 0.8)
        axes = _rotation(yaw, 0, 0)
        contrast = rng.uniform(0.15, 0.45)
        for axis in range(3):
            a, b = [i for i in range(3) if i != axis]
            for sign in (1, -1):
                u, v = axes[:, a] * sign, axes[:, b]
                if np.dot(np.cross(u, v), axes[:, axis] * sign) < 0:
                    u = -u
                add(centre + sign * size[axis] * axes[:, axis], u, v, size[a], size[b], z, contrast, two_sided=False)
    for _ in range(2):  # slanted free-standing panels
        z = rng.uniform(1.5, 3.5)
        axes = _rotation(rng.uniform(0.5, 1.0) * rng.choice([-1, 1]), rng.uniform(-0.3, 0.3), 0)
        add([rng.uniform(-0.4, 0.4) * z, rng.uniform(-0.3, 0.4), z], axes[:, 0], axes[:, 1],
            rng.uniform(0.3, 0.6), rng.uniform(0.25, 0.5), z, rng.uniform(0.2, 0.5))
    side = rng.choice([-1, 1])  # a near panel at the edge of the view
    add([side * rng.uniform(0.45, 0.6), rng.uniform(-0.2, 0.2), rng.uniform(1.0, 1.25)], ex, ey,
        0.22, 0.3, 1.1, rng.uniform(0.2, 0.4))
    z = rng.uniform(2.0, 4.0)  # nearly textureless panel
    add([rng.uniform(-0.3, 0.3) * z, rng.uniform(-0.5, 0.0), z], ex, ey, 0.4, 0.3, z, 0.02)

    tiles = []
    for contrast, base in zip(contrasts + [0.0], bases + [float(np.exp(SKY_LOG_INTENSITY))]):
        tile = np.log(base) + contrast * _periodic_noise(rng, rng.uniform(2.0, 4.0))
        tiles.append(np.pad(tile, ((0, 1), (0, 1)), mode="wrap"))
    amp = np.array([0.2, 0.06, 0.1, 0.08, 0.04, 0.03]) * rng.uniform(0.7, 1.3, 6)
    amp[:3] *= scale
    trajectory = {
        "amp": amp,
        "omega": rng.uniform(0.8, 1.8, 6) * speed,
        "phase": rng.uniform(0, 2 * np.pi, 6),
        "velocity": np.array([0.0, 0.0, rng.uniform(0.05, 0.15) * scale * speed]),
        "tilt": np.array([0.0, tilt_rad, 0.0]),
    }
    return Scene(patches, np.concatenate(tiles, axis=1).astype(np.float32), trajectory, camera)


def render(scene: Scene, rot: np.ndarray, centre: np.ndarray, ray_x: np.ndarray, ray_y: np.ndarray,
           with_intensity: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
    """Depth (camera Z, inf where nothing is hit) and log intensity for rays given in camera coordinates."""
    height, width = ray_x.shape
    depth = np.full((height, width), np.inf, dtype=np.float32)
    tex_u = np.zeros((height, width), dtype=np.float32)
    tex_v = np.zeros((height, width), dtype=np.float32)
    for index, patch in enumerate(scene.patches):
        rel = rot.T @ (patch.center - centre)
        n_c, u_c, v_c = rot.T @ patch.normal, rot.T @ patch.u, rot.T @ patch.v
        plane_d = float(n_c @ rel)
        if not patch.two_sided and plane_d >= 0:  # back face
            continue
        block = _block(rel + patch.corners @ rot, scene.camera, height, width)
        if block is None:
            continue
        rx, ry = ray_x[block], ray_y[block]
        with np.errstate(divide="ignore", invalid="ignore"):
            lam = np.float32(plane_d) / (np.float32(n_c[0]) * rx + np.float32(n_c[1]) * ry + np.float32(n_c[2]))
        s = lam * (np.float32(u_c[0]) * rx + np.float32(u_c[1]) * ry + np.float32(u_c[2])) - np.float32(u_c @ rel)
        t = lam * (np.float32(v_c[0]) * rx + np.float32(v_c[1]) * ry + np.float32(v_c[2])) - np.float32(v_c @ rel)
        depth_block = depth[block]
        hit = (lam > 0.05) & (np.abs(s) <= patch.half_u) & (np.abs(t) <= patch.half_v) & (lam < depth_block)
        if not hit.any():
            continue
        np.copyto(depth_block, lam, where=hit)
        if with_intensity:
            np.copyto(tex_u[block], _wrap(s, patch.texel_m) + np.float32(index * (TILE + 1)), where=hit)
            np.copyto(tex_v[block], _wrap(t, patch.texel_m), where=hit)
    if not with_intensity:
        return depth, None
    sky = np.isinf(depth)
    tex_u[sky] = len(scene.patches) * (TILE + 1) + TILE / 2
    tex_v[sky] = TILE / 2
    log_intensity = cv2.remap(scene.atlas, tex_u, tex_v, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return depth, log_intensity


def rectified_view_depth(scene: Scene, t_s: float, side: str,
                         rays: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """Depth (camera Z, inf where nothing) of either camera on the rectified grid: the ground truth."""
    ray_x, ray_y = rectified_rays(scene.camera) if rays is None else rays
    return render(scene, *scene.camera_pose(t_s, side), ray_x, ray_y, with_intensity=False)[0]


def _wrap(coord_m: np.ndarray, texel_m: float) -> np.ndarray:
    """Texel coordinate modulo the tile (floor-based: several times faster than np.mod on float32)."""
    texels = coord_m * np.float32(1 / texel_m)
    return texels - np.floor(texels * np.float32(1 / TILE)) * np.float32(TILE)


def _block(corners: np.ndarray, camera: Camera, height: int, width: int, margin: int = BLOCK_MARGIN_PX):
    """Pixel rectangle that can see a patch with these camera-frame corners (full frame if one is behind)."""
    if (corners[:, 2] <= 0.05).all():
        return None
    if (corners[:, 2] <= 0.05).any():
        return (slice(0, height), slice(0, width))
    px = camera.focal * corners[:, 0] / corners[:, 2] + camera.cx
    py = camera.focal * corners[:, 1] / corners[:, 2] + camera.cy
    x0, x1 = max(0, int(px.min()) - margin), min(width, int(np.ceil(px.max())) + margin)
    y0, y1 = max(0, int(py.min()) - margin), min(height, int(np.ceil(py.max())) + margin)
    if x0 >= x1 or y0 >= y1:
        return None
    return (slice(y0, y1), slice(x0, x1))
