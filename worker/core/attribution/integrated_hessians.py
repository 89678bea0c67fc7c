"""Integrated Hessians (Janizek, Sturmfels & Lee 2020): interactions of a differentiable model.

Integrated gradients applied to itself. With d = x - x' (input minus baseline row) and the
straight path x' + t d, the interaction of columns i != j and the main effect of i are

    G_ij = d_i d_j  int_0^1 int_0^1 a b H_ij(x' + a b d) da db
    G_ii = d_i      int_0^1 int_0^1     g_i (x' + a b d) da db  +  d_i^2 int int a b H_ii(...) da db

(g the gradient, H the Hessian of f), and they add up to f(x) - f(x') (completeness). The
integrand depends on a and b only through t = a b, whose density on [0, 1] is -ln t, so the
double integral is a single one, computed here with the n_steps-node Gauss rule for the weight
-ln t (exact for integrands that are polynomials of degree < 2 n_steps in t): n_steps points on
the path where the literal a x b grid of Janizek et al. needs n_steps^2 for the same accuracy.

Per variable (a categorical's one-hot columns are one variable): G_IJ sums G_ij over the
columns of I and J, i.e. d_I^T H d_J with d_I the part of d on I's columns, so one
Hessian-vector product per variable and path point (double backward) gives the whole V x V
matrix; the main effect of I is G_II (its within-group column pairs included). The pair
value reported is G_IJ + G_JI (the Hessian is symmetric: twice Janizek et al.'s entry), so that
main effects plus pairs, each pair once, add up to f(x) - f(x') as for Shapley interactions;
the residual is the quadrature's error. With a background (B > 1 rows) the result is the mean
over the baseline rows, the reference E_b f(b).

Twice differentiable models only. A ReLU network's Hessian is zero almost everywhere, so its
interactions would all read 0 and completeness would fail silently. As Janizek et al. do, each
nn.ReLU module is replaced by nn.Softplus(beta) in a COPY of the model, for this method only
(softplus_beta=None refuses ReLU models instead); the result's details say so and how far the
smooth copy's outputs move from the model's on the rows explained. Other piecewise-linear
activation modules (LeakyReLU, ReLU6, Hardtanh, ...) are refused, and a functional relu
inside a forward() cannot be seen from outside: its zero curvature shows as a large residual.
"""

from __future__ import annotations

import copy
import functools
from typing import Any

import numpy as np
import torch
from torch import nn

from worker.core.attribution.base import Attribution, Groups, ProgressCallback, collapse, expand, forward_in_batches
from worker.core.attribution.interaction_result import InteractionResult, finish

DEFAULT_STEPS = 32
MAX_STEPS = 256
DEFAULT_SOFTPLUS_BETA = 20.0
PIECEWISE_LINEAR = (nn.LeakyReLU, nn.ReLU6, nn.Hardtanh, nn.PReLU, nn.RReLU, nn.Hardsigmoid, nn.Hardswish, nn.Threshold)


@functools.lru_cache(maxsize=16)
def log_weight_rule(nodes: int) -> tuple[np.ndarray, np.ndarray]:
    """(t [n], w [n]): sum_k w_k h(t_k) = int_0^1 -ln(t) h(t) dt for polynomials h of degree < 2n.

    Golub-Welsch on the Jacobi matrix of the measure, obtained by Lanczos on a discretization
    that has the same moments up to degree 2n - 1: the distribution of a b for a, b on n-point
    Gauss-Legendre rules (t^k = a^k b^k is integrated exactly for k < 2n)."""
    if not 1 <= nodes <= MAX_STEPS:
        raise ValueError(f"n_steps must be between 1 and {MAX_STEPS}, not {nodes}")
    a, wa = np.polynomial.legendre.leggauss(nodes)
    a, wa = (a + 1) / 2, wa / 2
    t, w = np.outer(a, a).ravel(), np.outer(wa, wa).ravel()
    basis = np.zeros((nodes, t.size))
    basis[0] = np.sqrt(w)  # unit norm: the weights add up to 1
    diagonal, off = np.zeros(nodes), np.zeros(max(nodes - 1, 0))
    for k in range(nodes):
        v = t * basis[k]
        diagonal[k] = basis[k] @ v
        v -= diagonal[k] * basis[k] + (off[k - 1] * basis[k - 1] if k else 0.0)
        v -= basis[: k + 1].T @ (basis[: k + 1] @ v)  # full reorthogonalization
        if k + 1 < nodes:
            off[k] = np.linalg.norm(v)
            basis[k + 1] = v / off[k]
    points, vectors = np.linalg.eigh(np.diag(diagonal) + np.diag(off, 1) + np.diag(off, -1))
    return points, vectors[0] ** 2


def smooth_copy(forward: nn.Module, beta: float | None) -> tuple[nn.Module, int]:
    """(a copy of `forward` with nn.ReLU -> nn.Softplus(beta), the number replaced)."""
    found = [type(m).__name__ for m in forward.modules() if isinstance(m, PIECEWISE_LINEAR)]
    if found:
        raise ValueError(
            f"integrated Hessians need a twice-differentiable model: {', '.join(sorted(set(found)))} has no curvature "
            "(its Hessian is zero almost everywhere) and no smooth substitute is defined here"
        )
    if not any(isinstance(m, nn.ReLU) for m in forward.modules()):
        return forward, 0
    if beta is None:
        raise ValueError(
            "integrated Hessians need a twice-differentiable model: a ReLU network's Hessian is zero almost "
            "everywhere; allow a softplus substitute (softplus_beta) or use shapley_interactions"
        )
    smooth = copy.deepcopy(forward)
    replaced = 0
    for parent in list(smooth.modules()):
        # every place a ReLU is registered: one instance may sit in several (named_children skips repeats)
        for name, child in list(parent._modules.items()):
            if isinstance(child, nn.ReLU):
                setattr(parent, name, nn.Softplus(beta=beta))
                replaced += 1
    return smooth, replaced


class IntegratedHessians(Attribution):
    """attribute() returns [N, V + V*V]: main effects, then the pair matrix (flattened)."""

    name = "integrated_hessians"
    complete = True
    cpu_batch = 8_192  # path points per batch: each is one forward, a backward and V double backwards

    def __init__(
        self, forward: nn.Module, *, softplus_beta: float | None = DEFAULT_SOFTPLUS_BETA, batch: int | None = None
    ):
        super().__init__(forward, batch=batch)
        self.explained, self.replaced = smooth_copy(forward, softplus_beta)
        self.softplus_beta = softplus_beta

    def batch_per_row(self, background: int, variables: int, n_steps: int, n_samples: int | None) -> int:
        return background * n_steps

    def setup(self, inputs: torch.Tensor, baselines: torch.Tensor, groups: Groups, **options: Any) -> Any:
        points, weights = log_weight_rule(options["n_steps"])
        return torch.from_numpy(points), torch.from_numpy(weights)

    def attribute_chunk(
        self, inputs: torch.Tensor, baselines: torch.Tensor, groups: Groups, state: Any
    ) -> torch.Tensor:
        points, weights = (part.to(inputs.device, inputs.dtype) for part in state)
        count, steps, variables = inputs.shape[0], points.shape[0], len(groups)
        x, b = expand(inputs, baselines)
        d = (x - b).detach()  # [R, D], R = rows x background rows
        owner = torch.empty(inputs.shape[1], dtype=torch.long, device=inputs.device)
        for index, columns in enumerate(groups):
            owner[list(columns)] = index
        parts = torch.stack([d * (owner == index) for index in range(variables)])  # [V, R, D]: d_I
        path = (b[:, None, :] + points[None, :, None] * d[:, None, :]).reshape(-1, d.shape[1])
        path.requires_grad_(True)
        with torch.enable_grad():
            gradient = torch.autograd.grad(self.explained(path).sum(), path, create_graph=True)[0]  # [R*T, D]
            along = parts.repeat_interleave(steps, dim=1)  # [V, R*T, D]
            curvature = []  # H d_J at every point, for each J
            for index in range(variables):
                (hvp,) = torch.autograd.grad((gradient * along[index]).sum(), path, retain_graph=index + 1 < variables)
                curvature.append(hvp.detach())
        gradient = gradient.detach()
        quadratic = torch.einsum("irc,jrc->rij", along, torch.stack(curvature))  # [R*T, V, V]: d_I^T H d_J
        linear = torch.einsum("irc,rc->ri", along, gradient)  # [R*T, V]: d_I^T g
        quadratic = quadratic.reshape(-1, steps, variables, variables)
        linear = linear.reshape(-1, steps, variables)
        gamma = torch.einsum("t,rtij->rij", weights * points, quadratic)  # [R, V, V], ordered
        main = torch.diagonal(gamma, dim1=1, dim2=2) + torch.einsum("t,rti->ri", weights, linear)
        pairs = gamma + gamma.transpose(1, 2)
        pairs = pairs * (1 - torch.eye(variables, dtype=pairs.dtype, device=pairs.device))
        packed = torch.cat([main, pairs.reshape(pairs.shape[0], -1)], dim=1)
        return collapse(packed, count)


def integrated_hessians(
    forward: nn.Module,
    inputs: torch.Tensor,
    baselines: torch.Tensor,
    groups: Groups,
    *,
    n_steps: int = DEFAULT_STEPS,
    softplus_beta: float | None = DEFAULT_SOFTPLUS_BETA,
    progress: ProgressCallback = None,
) -> InteractionResult:
    """Integrated Hessians of every row of `inputs` [N, D] against `baselines` [B, D]."""
    method = IntegratedHessians(forward, softplus_beta=softplus_beta)
    packed = method.attribute(inputs, baselines, groups, n_steps=n_steps, progress=progress).numpy()
    m = len(groups)
    packed = packed.reshape(-1, m + m * m)  # no rows: the base returns [0, M]
    main, pairs = packed[:, :m], packed[:, m:].reshape(-1, m, m)
    details: dict[str, Any] = {"n_steps": n_steps, "quadrature": "Gauss rule for the weight -ln t (t = a b)"}
    if method.replaced:
        with torch.no_grad():
            both = torch.cat([inputs, baselines.to(inputs.device, inputs.dtype)])
            change = (forward_in_batches(method.explained, both) - forward_in_batches(forward, both)).abs().max()
        details["smoothing"] = {
            "replaced": f"{method.replaced} nn.ReLU module use(s) by nn.Softplus(beta={softplus_beta}), in a copy "
            "used for this method only: a ReLU network has no curvature to integrate",
            "softplus_beta": softplus_beta,
            "max_abs_output_change": float(change),
            "note": "main effects, pairs, outputs and the residual are those of the smooth copy; "
            "max_abs_output_change is its largest output difference from the model over the rows "
            "explained and the baseline rows",
        }
    return finish(
        method.explained, inputs, baselines, main, pairs,
        method="integrated_hessians", index="integrated_hessians", exact=False, complete=True, details=details,
    )  # fmt: skip
