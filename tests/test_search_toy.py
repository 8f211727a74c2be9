"""A planted task: every cell node must reproduce the cell input, so skip_connect is the right op on the
input edges; alternating weight/architecture steps on a supernet cell must find it (SPEC §6)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from models.cells import Cell
from models.decode import decode_genotype
from models.topology import EDGES, OPS
from models.trellis import all_edge_ops
from stereo.searching import arch_step, weight_step

INPUT_EDGES = [e for e, (_, source) in enumerate(EDGES) if source < 2]


class IdentityTaskCell(nn.Module):
    """One 2D supernet cell whose s0 and s1 are the same preprocessed input P (frozen 1x1 conv+BN+LIF)."""

    def __init__(self, channels: int = 4) -> None:
        super().__init__()
        block = 3 * channels
        self.cell = Cell(2, 0, channels, s0_channels={0: block}, s1_level=0, s1_channels=block,
                         edge_ops=all_edge_ops())
        self.cell.pre0.load_state_dict({f"0.{k}": v for k, v in self.cell.pre1.state_dict().items()})
        for p in [*self.cell.pre0.parameters(), *self.cell.pre1.parameters()]:
            p.requires_grad_(False)
        self.alpha = nn.Parameter(1e-3 * torch.randn(len(EDGES), len(OPS)))

    def arch_parameters(self) -> list[nn.Parameter]:
        return [self.alpha]

    def weight_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.cell.edges.parameters()]

    def forward(self, x_seq: torch.Tensor) -> torch.Tensor:
        return self.cell({0: x_seq}, x_seq, None, torch.softmax(self.alpha, dim=-1))[0]  # spikes (no current)

    def target(self, x_seq: torch.Tensor) -> torch.Tensor:
        """Every node should equal the preprocessed input P (what s0 and s1 carry into the cell)."""
        with torch.no_grad():
            p = self.cell.pre1(x_seq)
        return torch.cat([p, p, p], dim=2)


def test_search_selects_skip_connect_on_the_input_edges_when_the_target_is_the_input():
    torch.manual_seed(0)
    model = IdentityTaskCell()
    model.train()
    weights, arch = model.weight_parameters(), model.arch_parameters()
    w_opt = torch.optim.SGD(weights, lr=0.01, momentum=0.9, weight_decay=3e-4)
    a_opt = torch.optim.Adam(arch, lr=0.05, weight_decay=1e-3)
    gen = torch.Generator().manual_seed(1)

    def batch() -> dict[str, torch.Tensor]:
        return {"x": (torch.rand(2, 2, 12, 12, 12, generator=gen) < 0.3).float()}

    def loss_fn(m: nn.Module, b: dict[str, torch.Tensor]) -> torch.Tensor:
        return F.mse_loss(m(b["x"]), m.target(b["x"]))

    first = None
    for _ in range(25):
        weight_step(model, weights, arch, w_opt, batch(), loss_fn)
        loss = arch_step(model, weights, arch, a_opt, batch(), loss_fn)
        first = loss if first is None else first
    probs = torch.softmax(model.alpha.detach(), dim=-1)
    skip = OPS.index("skip_connect")
    assert all(int(probs[e].argmax()) == skip for e in INPUT_EDGES), probs
    assert float(probs[INPUT_EDGES, skip].min()) > 0.5
    genotype = decode_genotype(probs)
    assert all(op == skip for edge, op in genotype if edge in INPUT_EDGES)
    assert loss < 0.5 * first
