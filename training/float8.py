"""Float8 matmuls for the transformer blocks' linear layers (tensorwise dynamic scaling).

The recipe is torchao's default float8 training recipe, written out in one small file so the
trainer needs no extra package: before each matmul, every operand is scaled so that its largest
magnitude lands on the float8 format's largest finite value, cast to float8, and multiplied with
`torch._scaled_mm`, which accumulates in higher precision and un-scales the result:

    forward   y  = x @ W^T      x, W in e4m3 (3 mantissa bits; max 448)
    backward  dx = dy @ W       dy in e5m2 (wider range for gradients; max 57344), W in e4m3
              dW = dy^T @ x     dy in e5m2, x in e4m3

Only the four linears of each block are converted (not the embedding or the output head, as in
torchao's usual filter). Parameters, their names, dtypes and the state dict are unchanged: a
converted layer is an `nn.Linear` whose forward runs the three matmuls above. `_scaled_mm` needs
both matmul dimensions divisible by 16 and, on GPUs, compute capability 8.9 or newer (Ada,
Hopper); torch also implements it on CPU, which is what the CPU tests exercise.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

E4M3 = torch.float8_e4m3fn
E5M2 = torch.float8_e5m2


def to_float8(t: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """(t scaled into dtype's range, cast to dtype; the inverse scale, a float32 scalar)."""
    fmax = torch.finfo(dtype).max
    amax = t.detach().abs().amax().float().clamp(min=1e-12)
    scale = fmax / amax
    q = (t.float() * scale).clamp(-fmax, fmax).to(dtype)
    return q, scale.reciprocal()


class _Float8Matmul(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, out_dtype: torch.dtype) -> torch.Tensor:
        xq, x_inv = to_float8(x, E4M3)
        wq, w_inv = to_float8(weight, E4M3)
        ctx.save_for_backward(xq, x_inv, wq, w_inv)
        ctx.x_dtype, ctx.w_dtype = x.dtype, weight.dtype
        # _scaled_mm wants its first operand row-major and its second column-major
        return torch._scaled_mm(xq, wq.t(), scale_a=x_inv, scale_b=w_inv, out_dtype=out_dtype)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        xq, x_inv, wq, w_inv = ctx.saved_tensors
        gq, g_inv = to_float8(grad, E5M2)
        grad_x = torch._scaled_mm(gq, wq.t().contiguous().t(), scale_a=g_inv, scale_b=w_inv, out_dtype=ctx.x_dtype)
        grad_w = torch._scaled_mm(
            gq.t().contiguous(), xq.t().contiguous().t(), scale_a=g_inv, scale_b=x_inv, out_dtype=ctx.w_dtype
        )
        return grad_x, grad_w, None


class Float8Linear(nn.Linear):
    """nn.Linear (no bias) whose matmuls run in float8; see the module docstring."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.bias is not None:
            raise ValueError("Float8Linear: layers with a bias are not supported (OLMo has none)")
        out_dtype = torch.get_autocast_dtype(x.device.type) if torch.is_autocast_enabled(x.device.type) else x.dtype
        weight = self.weight.to(out_dtype)
        x2d = x.reshape(-1, x.shape[-1]).to(out_dtype).contiguous()
        if x2d.shape[0] % 16:  # _scaled_mm needs every dimension divisible by 16
            return F.linear(x.to(out_dtype), weight)
        return _Float8Matmul.apply(x2d, weight, out_dtype).view(*x.shape[:-1], self.out_features)


def convert_to_float8(model: nn.Module) -> int:
    """Turn the linears of every transformer block into Float8Linear in place (parameters kept);
    returns how many were converted. Layers whose sizes are not multiples of 16 stay as they are."""
    converted = 0
    for block in model.transformer.blocks:
        for name in ("att_proj", "attn_out", "ff_proj", "ff_out"):
            layer = getattr(block, name)
            if type(layer) is nn.Linear and layer.in_features % 16 == 0 and layer.out_features % 16 == 0:
                layer.__class__ = Float8Linear
                converted += 1
    return converted


def float8_supported(device: torch.device) -> tuple[bool, str]:
    """(whether `_scaled_mm` runs on this device, why not)."""
    if device.type == "cuda":
        major, minor = torch.cuda.get_device_capability(device)
        if (major, minor) < (8, 9):
            return False, f"compute capability {major}.{minor} < 8.9 has no float8 matmul"
    try:
        a = torch.ones(16, 16, device=device).to(E4M3)
        one = torch.ones((), device=device)
        torch._scaled_mm(a, a.t(), scale_a=one, scale_b=one, out_dtype=torch.bfloat16)
    except (RuntimeError, NotImplementedError) as e:
        return False, f"torch._scaled_mm failed on {device}: {str(e).splitlines()[0]}"
    return True, ""
