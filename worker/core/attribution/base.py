"""What every attribution method here shares: the call shape, grouping, background expansion.

Call shape (the same for every method, Captum's style)::

    method = IntegratedGradients(forward)          # forward: nn.Module, [n, D] -> [n]
    phi = method.attribute(inputs, baselines, groups, n_steps=50, n_samples=None, seed=0,
                           progress=None)           # -> float64 [N, V] on the CPU

- ``inputs`` [N, D]: encoded rows (one-hot categoricals, standardized numerics);
- ``baselines`` [B, D]: one baseline row (B = 1) or a background sample. With B > 1 the result
  is the expected attribution over the background rows (the SHAP convention): for every
  method here that is the mean of the attributions against each background row, and its
  reference output is the mean of the outputs of the background rows;
- ``groups``: for each variable, the encoded columns it owns (disjoint, covering all columns).
  Perturbation methods move a variable's columns together (Captum's ``feature_mask``), so a
  categorical is switched as one; gradient methods sum their columns' attributions;
- ``progress(fraction)`` is called between chunks of rows: the job layer raises there to
  cancel or stop at the time limit.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

# Model rows per forward batch: on a CPU a few thousand rows keep the activations of a small
# tabular model in cache (2k rows run 3-4x faster than 64k); an accelerator wants big batches.
CPU_BATCH = 2_048
EVAL_BATCH = 65_536
# Model rows evaluated per chunk of explained rows: between two progress reports, where a
# cancel or the time limit takes effect.
WORK_PER_CHUNK = 1 << 21


def forward_batch(device: torch.device | str, cpu: int = CPU_BATCH) -> int:
    return cpu if torch.device(device).type == "cpu" else EVAL_BATCH

Groups = Sequence[Sequence[int]]
ProgressCallback = Callable[[float], None] | None


@contextlib.contextmanager
def seeded(seed: int, device: torch.device | str = "cpu") -> Iterator[None]:
    """Seed torch's and numpy's global generators (Captum draws from both) for the block, and
    put their states back afterwards."""
    device = torch.device(device)
    devices = [device.index if device.index is not None else torch.cuda.current_device()] if device.type == "cuda" else []
    state = np.random.get_state()
    with torch.random.fork_rng(devices=devices):
        if devices:
            torch.manual_seed(seed)
        else:
            # The CPU generator only: torch.manual_seed would also queue a seed for CUDA (with a
            # formatted stack, a few milliseconds of a one-row job), which fork_rng does not restore.
            torch.random.default_generator.manual_seed(seed)
        np.random.seed(seed % 2**32)
        try:
            yield
        finally:
            np.random.set_state(state)


def feature_mask(groups: Groups, width: int, device: torch.device | str) -> torch.Tensor:
    """Captum's feature_mask [1, D]: column c -> the index of its variable."""
    mask = torch.full((1, width), -1, dtype=torch.long, device=device)
    for index, columns in enumerate(groups):
        mask[0, list(columns)] = index
    if bool((mask < 0).any()):
        raise ValueError("groups must cover every encoded column")
    return mask


def group_sum(attributions: torch.Tensor, groups: Groups) -> torch.Tensor:
    """[N, D] column attributions -> [N, V]: each variable's columns summed."""
    return torch.stack([attributions[:, list(columns)].sum(dim=1) for columns in groups], dim=1)


def group_take(attributions: torch.Tensor, groups: Groups) -> torch.Tensor:
    """[N, D] attributions of a feature_mask method (one value repeated over a variable's
    columns) -> [N, V]."""
    return attributions[:, [columns[0] for columns in groups]]


def expand(inputs: torch.Tensor, baselines: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Every input paired with every baseline row: ([N*B, D], [N*B, D]), input-major."""
    count, background = inputs.shape[0], baselines.shape[0]
    return inputs.repeat_interleave(background, dim=0), baselines.repeat(count, 1)


def collapse(attributions: torch.Tensor, count: int) -> torch.Tensor:
    """[N*B, ...] from `expand` -> [N, ...], the mean over the baseline rows."""
    return attributions.reshape(count, -1, *attributions.shape[1:]).mean(dim=1)


@torch.no_grad()
def forward_in_batches(forward: Callable[[torch.Tensor], torch.Tensor], inputs: torch.Tensor, batch: int | None = None) -> torch.Tensor:
    """forward over [..., D] in batches, no gradients: -> [...]."""
    batch = batch or forward_batch(inputs.device)
    flat = inputs.reshape(-1, inputs.shape[-1])
    outputs = [forward(flat[start : start + batch]) for start in range(0, flat.shape[0], batch)]
    joined = torch.cat(outputs) if outputs else flat.new_zeros(0)
    return joined.reshape(inputs.shape[:-1])


def summed_gradients(forward_fn, inputs, target_ind=None, additional_forward_args=None):
    """Captum's `compute_gradients` with one backward pass of the summed outputs, where Captum
    passes every output scalar to autograd separately (torch.unbind): the gradients are the same
    (autograd sums over the outputs either way), but the unbound form costs seconds for the
    tens of thousands of rows of an integrated-gradients batch. Set as `gradient_func`."""
    from captum._utils.common import _run_forward

    with torch.autograd.set_grad_enabled(True):
        outputs = _run_forward(forward_fn, inputs, target_ind, additional_forward_args)
        assert outputs[0].numel() == 1, "one scalar per row expected"
        return torch.autograd.grad(outputs.sum(), inputs)


def captum_gradient_method(cls, forward):
    """A Captum gradient attribution object that takes gradients with `summed_gradients`."""
    method = cls(forward)
    method.gradient_func = summed_gradients
    return method


class Attribution:
    """Base of the methods: row chunking, seeding, progress; subclasses do one chunk."""

    name = ""
    # Attributions add up to forward(x) - mean forward(baseline) (exactly, up to an integration
    # error, or in expectation): the residual is a meaningful self-check.
    complete = False

    # forward batch on a CPU (see CPU_BATCH); methods with much per-call overhead ask for more
    cpu_batch = CPU_BATCH

    # Sampling methods: `n_samples` must be given (the job kind resolves its default; the core
    # keeps no second copy of it).
    needs_n_samples = False

    def __init__(self, forward: nn.Module, *, batch: int | None = None):
        self.forward = forward
        self.fixed_batch = batch
        self.batch = batch or EVAL_BATCH

    def batch_per_row(self, background: int, variables: int, n_steps: int, n_samples: int | None) -> int:
        """Model rows held in one forward batch per explained row (the memory)."""
        return background

    def attribute(
        self,
        inputs: torch.Tensor,
        baselines: torch.Tensor,
        groups: Groups,
        *,
        n_steps: int = 50,
        n_samples: int | None = None,
        seed: int = 0,
        progress: ProgressCallback = None,
        work_per_row: int | None = None,
    ) -> torch.Tensor:
        """`work_per_row`: model rows evaluated per explained row, as the job kind's cost model
        counts them (service/kinds/tabular_attribution.py): it sets how many rows a chunk (one
        progress step) holds; without it, the rows one forward batch holds."""
        if self.needs_n_samples and not n_samples:
            raise ValueError(f"{self.name} needs n_samples (the number of samples to draw)")
        if inputs.ndim != 2 or baselines.ndim != 2 or inputs.shape[1] != baselines.shape[1]:
            raise ValueError(f"inputs [N, D] and baselines [B, D] expected, got {tuple(inputs.shape)} and {tuple(baselines.shape)}")
        groups = [list(columns) for columns in groups]
        feature_mask(groups, inputs.shape[1], "cpu")  # validates the grouping
        baselines = baselines.to(inputs.device, inputs.dtype)
        count = inputs.shape[0]
        self.batch = self.fixed_batch or forward_batch(inputs.device, self.cpu_batch)
        shape = (baselines.shape[0], len(groups), n_steps, n_samples)
        memory = max(1, self.batch_per_row(*shape))
        work = max(1, work_per_row or memory)
        chunk = max(1, min(self.batch // memory, max(WORK_PER_CHUNK, self.batch) // work))
        results = []
        with seeded(seed, inputs.device):
            state = self.setup(inputs, baselines, groups, n_steps=n_steps, n_samples=n_samples, seed=seed)
            for start in range(0, count, chunk):
                part = self.attribute_chunk(inputs[start : start + chunk], baselines, groups, state)
                results.append(part.detach().to("cpu", torch.float64))
                if progress is not None:
                    progress(min(1.0, (start + chunk) / max(count, 1)))
        if not results:
            return torch.zeros(0, len(groups), dtype=torch.float64)
        return torch.cat(results)

    def setup(self, inputs: torch.Tensor, baselines: torch.Tensor, groups: Groups, **options: Any) -> Any:
        """Work shared by all chunks (options: n_steps, n_samples, seed)."""
        return options

    def attribute_chunk(self, inputs: torch.Tensor, baselines: torch.Tensor, groups: Groups, state: Any) -> torch.Tensor:
        raise NotImplementedError


def column_masks(coalitions: torch.Tensor, groups: Groups, width: int) -> torch.Tensor:
    """[K, V] bool coalitions of variables -> [K, D] bool masks of encoded columns."""
    owner = torch.empty(width, dtype=torch.long)
    for index, columns in enumerate(groups):
        owner[list(columns)] = index
    return coalitions[:, owner.to(coalitions.device)]


@torch.no_grad()
def coalition_values(
    forward: Callable[[torch.Tensor], torch.Tensor],
    inputs: torch.Tensor,
    baselines: torch.Tensor,
    masks: torch.Tensor,
    batch: int | None = None,
) -> torch.Tensor:
    """v_i(S) = mean over background rows b of forward(x_i on S, b elsewhere): float64 [N, K]
    for inputs [N, D], baselines [B, D], column masks [K, D] (True: the input's value).

    The (row, coalition) pairs are walked in blocks of about `batch` model rows (each pair
    mixes with every background row)."""
    count, background, coalitions = inputs.shape[0], baselines.shape[0], masks.shape[0]
    batch = batch or forward_batch(inputs.device)
    masks = masks.to(inputs.device)
    values = torch.empty(count * coalitions, dtype=torch.float64, device=inputs.device)
    step = max(1, batch // max(1, background))
    pairs = torch.arange(count * coalitions, device=inputs.device)
    for start in range(0, count * coalitions, step):
        block = pairs[start : start + step]
        rows, members = block // coalitions, block % coalitions
        mixed = torch.where(masks[members][:, None, :], inputs[rows][:, None, :], baselines[None, :, :])
        out = forward(mixed.reshape(-1, mixed.shape[-1])).reshape(len(block), background)
        values[start : start + len(block)] = out.double().mean(dim=1)
    return values.reshape(count, coalitions)
