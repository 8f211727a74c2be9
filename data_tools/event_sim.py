"""Events from log-intensity frames (ESIM-style): per-pixel thresholds, refractory period, noise.

Between two rendered frames the log intensity of a pixel is taken as linear in time, so every
threshold crossing gets an interpolated timestamp. The pixel's reference level moves by one
threshold per crossing; crossings within the refractory period after the pixel's last event are
lost. Background-activity noise adds Poisson events at random pixels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class SensorParams:
    threshold: float = 0.2
    threshold_sigma: float = 0.03
    refractory_us: int = 500
    noise_rate_hz: float = 0.2  # background activity per pixel


class EventSimulator:
    """State of one camera: reference log intensity, thresholds and last event time per pixel."""

    def __init__(self, log_frame: np.ndarray, t_us: int, params: SensorParams, rng: np.random.Generator):
        self.params = params
        self.rng = rng
        shape = log_frame.shape
        self.width = shape[1]
        self.c_pos = np.clip(rng.normal(params.threshold, params.threshold_sigma, shape), 0.05, None)
        self.c_neg = np.clip(rng.normal(params.threshold, params.threshold_sigma, shape), 0.05, None)
        self.reference = log_frame.astype(np.float64) + rng.uniform(-0.5, 0.5, shape) * self.c_neg
        self.last_us = np.full(shape[0] * shape[1], -(10**12), dtype=np.int64)
        self.previous = log_frame.astype(np.float64)
        self.t_us = t_us

    def step(self, log_frame: np.ndarray, t_us: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Events in (previous frame time, t_us]: x, y (int), t_us (int64, sorted), p (+1/-1)."""
        new = log_frame.astype(np.float64)
        diff = new - self.reference
        n_pos = np.floor(np.maximum(diff, 0) / self.c_pos).astype(np.int64)
        n_neg = np.floor(np.maximum(-diff, 0) / self.c_neg).astype(np.int64)
        self.reference += n_pos * self.c_pos - n_neg * self.c_neg
        pixels, times, polarity = [], [], []
        for counts, sign, thresholds in ((n_pos, 1, self.c_pos), (n_neg, -1, self.c_neg)):
            active = np.flatnonzero(counts)  # only the few pixels that cross a threshold
            if active.size == 0:
                continue
            n = counts.ravel()[active]
            pix = np.repeat(active, n)
            k = np.arange(pix.size) - np.repeat(np.cumsum(n) - n, n) + 1  # crossing number 1..n
            c = thresholds.ravel()[pix]
            ref_before = self.reference.ravel()[pix] - sign * np.repeat(n, n) * c
            level = ref_before + sign * k * c
            start, stop = self.previous.ravel()[pix], new.ravel()[pix]
            span = np.where(stop != start, stop - start, 1.0)
            frac = np.clip((level - start) / span, 0.0, 1.0)
            pixels.append(pix)
            times.append(self.t_us + np.maximum(1, np.rint(frac * (t_us - self.t_us))).astype(np.int64))
            polarity.append(np.full(pix.size, sign, dtype=np.int8))
        pix, t, p = self._refractory(pixels, times, polarity)
        pix, t, p = self._add_noise(pix, t, p, t_us)
        order = np.argsort(t, kind="stable")
        self.previous, self.t_us = new, t_us
        pix, t, p = pix[order], t[order], p[order]
        return pix % self.width, pix // self.width, t, p

    def _refractory(self, pixels, times, polarity):
        """Drop events closer than the refractory period to the pixel's previous kept event."""
        if not pixels:
            return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int8)
        pix, t, p = np.concatenate(pixels), np.concatenate(times), np.concatenate(polarity)
        order = np.lexsort((t, pix))
        pix, t, p = pix[order], t[order], p[order]
        rank = np.arange(pix.size) - np.searchsorted(pix, pix, side="left")  # event number within its pixel
        keep = np.zeros(pix.size, dtype=bool)
        for r in range(int(rank.max()) + 1):  # a handful of passes: crossings per pixel per frame
            idx = np.flatnonzero(rank == r)
            ok = t[idx] - self.last_us[pix[idx]] >= self.params.refractory_us
            keep[idx[ok]] = True
            self.last_us[pix[idx[ok]]] = t[idx[ok]]
        return pix[keep], t[keep], p[keep]

    def _add_noise(self, pix, t, p, t_us):
        count = self.rng.poisson(self.params.noise_rate_hz * self.last_us.size * (t_us - self.t_us) * 1e-6)
        noise_pix = self.rng.integers(0, self.last_us.size, count)
        noise_t = self.rng.integers(self.t_us + 1, t_us + 1, count)
        noise_p = self.rng.choice(np.array([-1, 1], dtype=np.int8), count)
        return np.concatenate([pix, noise_pix]), np.concatenate([t, noise_t]), np.concatenate([p, noise_p])
