"""The search supernet (SPEC §6): the stereo network with every cell op and every trellis move built.

``SearchStereoNet`` is the ``StereoNet`` forward of the retrained network composed with ``SearchTrellis``
feature and matching nets: the same ``TrellisNet`` built over the whole trellis table with all three ops
on every edge, plus that net's own alpha (9 edges x 3 ops) and beta (layers x 4 levels x 3 moves). The
forward pass (padding, cost volume, head, soft-argmin) is the retrained network's, not a copy, and
module names match, so a retrained network's state-dict keys are a subset of the supernet's.

Modes of each ``SearchTrellis``:
- search: op weights softmax(alpha) per edge, move weights softmax(beta) over the valid moves of each
  source level;
- discrete (``set_discrete(arch)``): exact 0/1 op masks from a genotype and only the cells of a path,
  which computes exactly what ``SpikingStereoNet(arch)`` computes with the same weights.
"""

from __future__ import annotations

import torch
from torch import nn

from models.arch import DEFAULT_COST_VOLUME, DEFAULT_READOUT, Architecture, NetSpec
from models.cost_volume import cost_volume_channels
from models.decode import decode_genotype, move_probabilities, viterbi_path
from models.neurons import lif_modules
from models.stereo_net import SpikingStereoNet, StereoNet, neuron_names
from models.topology import MOVES, NUM_EDGES, NUM_LEVELS, NUM_NODES, OPS
from models.trellis import TrellisNet, all_edge_ops, genotype_op_mask, supernet_transitions


class SearchTrellis(TrellisNet):
    """A supernet feature (2D) or matching (3D) net holding its own architecture parameters."""

    def __init__(self, dims: int, in_channels: int, filter_multiplier: int, steps: int, num_layers: int,
                 ann: bool = False, init_std: float = 1e-3, shortcuts: bool = True,
                 spiking_output: bool = True) -> None:
        super().__init__(dims, in_channels, filter_multiplier, steps, supernet_transitions(num_layers),
                         all_edge_ops(), ann, shortcuts, spiking_output)
        self.num_layers = num_layers
        self.alpha = nn.Parameter(init_std * torch.randn(NUM_EDGES, len(OPS)))
        self.beta = nn.Parameter(init_std * torch.randn(num_layers, NUM_LEVELS, len(MOVES)))
        self.discrete: NetSpec | None = None
        self.record_synops = False  # set by SearchStereoNet.record_synops for the search's energy term
        self.expected_synops: torch.Tensor | None = None

    def op_weights(self) -> torch.Tensor:
        """softmax(alpha) over the ops of each edge (9 x 3)."""
        return torch.softmax(self.alpha, dim=-1)

    def move_probs(self) -> torch.Tensor:
        """(layers, levels, 3): softmax(beta) over the valid moves of each source level, 0 elsewhere."""
        return move_probabilities(self.beta)

    def set_discrete(self, spec: NetSpec | None) -> None:
        """Run only ``spec``'s path with exact 0/1 op masks (None: back to the weighted supernet)."""
        if spec is not None and len(spec.path) != self.num_layers:
            raise ValueError(f"path {spec.path} has {len(spec.path)} layers, the supernet {self.num_layers}")
        self.discrete = spec

    def decode(self) -> tuple[list[int], list[list[int]]]:
        """(Viterbi path, genotype) of the current alpha and beta; in discrete mode, the fixed ones."""
        if self.discrete is not None:
            return list(self.discrete.path), [list(row) for row in self.discrete.genotype]
        return viterbi_path(self.move_probs()), decode_genotype(self.op_weights())

    def forward(self, x_seq: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        synops: list[torch.Tensor] | None = [] if self.record_synops else None
        if self.discrete is not None:
            mask = genotype_op_mask(self.discrete.genotype).to(x_seq.device, x_seq.dtype)
            out = super().forward(x_seq, op_weights=mask, path=self.discrete.path, synops=synops)
        else:
            out = super().forward(x_seq, op_weights=self.op_weights(), move_probs=self.move_probs(), synops=synops)
        self.expected_synops = torch.stack(synops).sum() if synops else None
        return out


class SearchStereoNet(StereoNet):
    """Supernet with the retrained network's forward; ``arch_parameters``/``weight_parameters`` split the two sets."""

    def __init__(self, in_channels: int = 2, num_bins: int = 5, max_disparity_px: int = 48,
                 feature_layers: int = 2, matching_layers: int = 4, filter_multiplier: int = 4,
                 steps: int = NUM_NODES, ann: bool = False, init_std: float = 1e-3,
                 cost_volume: str = DEFAULT_COST_VOLUME, membrane_shortcuts: bool = True,
                 readout: str = DEFAULT_READOUT, disparity_subbins: int = 1) -> None:
        feature = SearchTrellis(2, in_channels, filter_multiplier, steps, feature_layers, ann, init_std,
                                membrane_shortcuts)
        matching = SearchTrellis(3, cost_volume_channels(cost_volume, feature.out_channels), filter_multiplier, steps,
                                 matching_layers, ann, init_std, membrane_shortcuts, readout == "spikes")
        super().__init__(feature, matching, cost_volume, max_disparity_px, ann, membrane_shortcuts, disparity_subbins)
        self.num_bins = num_bins
        self.in_channels = in_channels
        self.filter_multiplier = filter_multiplier
        self.steps = steps
        self.membrane_shortcuts = membrane_shortcuts
        self.readout = readout

    @classmethod
    def from_architecture(cls, arch: Architecture, in_channels: int = 2, ann: bool = False) -> SearchStereoNet:
        """A supernet sized like ``arch`` (its channels and layer counts), in discrete mode on it."""
        if arch.feature.filter_multiplier != arch.matching.filter_multiplier:
            raise ValueError("the supernet shares one filter multiplier between feature and matching nets")
        net = cls(in_channels, arch.num_bins, arch.max_disparity_px, len(arch.feature.path),
                  len(arch.matching.path), arch.feature.filter_multiplier, arch.feature.steps, ann,
                  cost_volume=arch.cost_volume, membrane_shortcuts=arch.membrane_shortcuts, readout=arch.readout,
                  disparity_subbins=arch.disparity_subbins)
        net.set_discrete(arch)
        return net

    def set_discrete(self, arch: Architecture | None) -> None:
        """Discrete mode on ``arch``'s paths and genotypes, or back to the weighted supernet (None)."""
        self.feature.set_discrete(arch.feature if arch else None)
        self.matching.set_discrete(arch.matching if arch else None)

    def record_synops(self, on: bool = True) -> None:
        """From the next forward on, keep the expected synaptic operations of the cells (``expected_synops``)."""
        self.feature.record_synops = self.matching.record_synops = on

    def expected_synops(self) -> torch.Tensor:
        """The last forward's expected synaptic operations of the feature and matching cells, over its whole
        batch: differentiable in alpha and beta, the spikes themselves measured (SPEC §9's count)."""
        counts = [net.expected_synops for net in (self.feature, self.matching) if net.expected_synops is not None]
        if not counts:
            raise RuntimeError("call record_synops() before the forward whose synaptic operations you want")
        return torch.stack(counts).sum()

    def arch_parameters(self) -> list[nn.Parameter]:
        return [self.feature.alpha, self.feature.beta, self.matching.alpha, self.matching.beta]

    def weight_parameters(self) -> list[nn.Parameter]:
        arch_ids = {id(p) for p in self.arch_parameters()}
        return [p for p in self.parameters() if id(p) not in arch_ids]

    def decode(self, filter_multiplier: int | None = None, source: str = "") -> Architecture:
        """The architecture the current alpha/beta select, with the current b of its LIF layers.

        ``filter_multiplier`` sets the channel sizes written for retraining (default: the supernet's).
        """
        fm = self.filter_multiplier if filter_multiplier is None else filter_multiplier
        specs = {}
        for name, net in (("feature", self.feature), ("matching", self.matching)):
            path, genotype = net.decode()
            specs[name] = NetSpec(path, genotype, fm, self.steps, self.steps)
        arch = Architecture(specs["feature"], specs["matching"], self.num_bins, self.max_disp, {}, source,
                            self.cost_volume, self.membrane_shortcuts, self.readout, self.disparity_subbins)
        # The retrained net's LIF names are a subset of the supernet's: read them off its module tree, built
        # on the meta device (no memory, no initialisation work).
        with torch.device("meta"):
            names = neuron_names(SpikingStereoNet(arch, self.in_channels, self.ann))
        lifs = lif_modules(self)
        arch.lif_b = {name: round(float(lifs[name].b), 6) for name in sorted(names) if name in lifs}
        return arch

