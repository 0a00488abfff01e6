"""Does inductor still get gradients wrong through differentiated compile regions?

    python benchmarks/region_gradients.py

Why rr's ``repeated_region`` makes only calls without gradients compile regions: a region
(``torch.compiler.nested_compile_region``) applied twice to ``z + x``, where ``x`` is
gathered from a table (an embedding), gives the table a wrong gradient under inductor,
while the region's own weights get the right one. rr's recurrences have exactly this
shape (the input injection of TRM, HRM and URM is an embedding). Prints the relative
error of each gradient against eager, with the region and without; when a torch release
prints 0 for both, regions for calls with gradients could come back (HRM's first step on
an H200: 44.6 s with regions for every call, 62.7 s with regions for calls without
gradients only). torch 2.13 on CPU: the table's gradient 2.95 off with the region, 0
without.
"""

from __future__ import annotations

import torch
from torch import nn


class Block(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.up = nn.Linear(width, 2 * width, bias=False)
        self.down = nn.Linear(2 * width, width, bias=False)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        out = self.down(nn.functional.silu(self.up(h)))
        return out * torch.rsqrt(out.square().mean(-1, keepdim=True) + 1e-5)


class Recurrence(nn.Module):
    def __init__(self, width: int = 32, vocab: int = 10, cycles: int = 2) -> None:
        super().__init__()
        self.table = nn.Parameter(torch.randn(vocab, width))
        self.block = Block(width)
        self.cycles = cycles

    def forward(self, ids: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        x = self.table[ids]
        for _ in range(self.cycles):
            z = self.block(z + x)
        return z


def gradient_errors(region: bool) -> dict[str, float]:
    """Relative error of each parameter's gradient, inductor against eager."""
    torch.manual_seed(0)
    model = Recurrence()
    forward = Block.forward
    if region:
        Block.forward = torch.compiler.nested_compile_region(forward)
    try:
        ids, z, weights = torch.randint(0, 10, (4, 6)), torch.randn(4, 6, 32), torch.randn(4, 6, 32)
        grads = []
        for fn in (model, torch.compile(model, backend="inductor")):
            model.zero_grad()
            (fn(ids, z) * weights).sum().backward()
            grads.append({name: p.grad.clone() for name, p in model.named_parameters()})
    finally:
        Block.forward = forward
        torch._dynamo.reset()
    eager, compiled = grads
    return {name: ((compiled[name] - eager[name]).norm() / eager[name].norm()).item() for name in eager}


if __name__ == "__main__":
    print(f"torch {torch.__version__}")
    for region in (True, False):
        errors = gradient_errors(region)
        print(f"{'with' if region else 'without'} the region: " + ", ".join(f"{k} {v:.4f}" for k, v in errors.items()))
