"""Per-sample gradients G (n×p) of the loss with respect to the prunable weights.

The empirical Fisher is F = GᵀG / n; it is never formed (p can be 10⁵–10⁷). Row i of G is
∇_w ℓ(f(x_i; w), y_i) for one calibration sample, restricted to the prunable weights and
flattened in the order of ``names``.

Two exact ways to build G:

* closed form (default where it applies): for ``nn.Linear`` and ``nn.Conv2d`` (grouped and
  depthwise ones included) the per-sample weight gradient is the outer product of the layer's
  output gradient and its (unfolded) input, ∇W_i = δ_iᵀ a_i, group by group. One batched
  forward/backward with hooks gives every row; no weight gradients are accumulated at all.
* ``torch.func`` (vmap over grad of a functional call): any module, slower.

BatchNorm stays in eval mode, so the rows are independent per sample.
"""

from __future__ import annotations

import os
import weakref
from contextlib import closing
from dataclasses import dataclass
from functools import partial
from typing import Iterator

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.grad import conv2d_weight

from core.errors import StudioError
from core.evaluate import as_logits, eval_mode
from core.progress import CancelToken, ProgressFn, check, report

# Bytes of per-sample gradients one chunk may hold before they are copied into G: 128 images on
# ResNet20 (1 MB a row), a few on a 28 M-weight network, so the copy never rivals G itself.
CHUNK_BYTES = 512 << 20


@dataclass(frozen=True)
class GradientMatrix:
    """G (n×p, float32) with the column layout: ``names[i]`` occupies ``slices[i]``."""

    G: torch.Tensor
    names: tuple[str, ...]
    shapes: tuple[tuple[int, ...], ...]
    offsets: tuple[int, ...]
    loss: float  # mean loss over the rows' samples
    widths: tuple[int, ...] | None = None  # columns per tensor when only some were kept

    @property
    def slices(self) -> list[slice]:
        """Column slice of each weight tensor."""
        widths = self.widths or tuple(_numel(s) for s in self.shapes)
        return [slice(o, o + w) for o, w in zip(self.offsets, widths)]


def _numel(shape: tuple[int, ...]) -> int:
    n = 1
    for s in shape:
        n *= s
    return n


def available_memory_bytes() -> int:
    """Memory the OS says is available (MemAvailable), or a conservative guess."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 4 << 30


def rows_that_fit(p: int, *, budget_bytes: int | None = None, factor: float = 1.5) -> int:
    """The most gradient rows G (rows × p float32, with ``factor`` for the solver's workspace)
    may have within the memory budget (default half the available RAM); at least 1."""
    budget = budget_bytes if budget_bytes is not None else available_memory_bytes() // 2
    return max(1, int(budget / (max(p, 1) * 4 * factor)))


def check_memory(n: int, p: int, *, budget_bytes: int | None = None, factor: float = 1.5) -> None:
    """Refuse, with a number of samples that fits (:func:`rows_that_fit`), when G (n×p float32)
    would not fit.

    ``factor`` accounts for the solver's workspace on top of G itself.
    """
    budget = budget_bytes if budget_bytes is not None else available_memory_bytes() // 2
    need = int(n * p * 4 * factor)
    if need > budget:
        fits = rows_that_fit(p, budget_bytes=budget, factor=factor)
        raise StudioError(
            f"{n} gradient samples × {p:,} prunable weights need about {need / 2**30:.1f} GiB, "
            f"over the memory budget of {budget / 2**30:.1f} GiB (half of the available RAM).",
            field="samples",
            fix=f"use at most {fits} samples (--samples {fits}; in the app, the Samples box), or prune fewer layers.",
        )


def _named_weights(model: nn.Module, names: tuple[str, ...] | list[str]) -> dict[str, torch.Tensor]:
    """The model's parameters by name, after checking that every one of ``names`` is among them."""
    params = dict(model.named_parameters())
    missing = [nm for nm in names if nm not in params]
    if missing:
        raise StudioError(f"unknown parameter names: {missing[:5]}", field="layers",
                          fix="pick prunable weights listed by `chita-studio info MODEL`.")
    return params


def _modules_by_param(model: nn.Module) -> dict[str, tuple[nn.Module, str]]:
    out = {}
    for mname, mod in model.named_modules():
        for pname, _ in mod.named_parameters(recurse=False):
            out[f"{mname}.{pname}" if mname else pname] = (mod, pname)
    return out


def supports_closed_form(model: nn.Module, names: list[str] | tuple[str, ...]) -> bool:
    """True if every name is the ``weight`` of a Linear or a Conv2d (any groups) with zero
    padding given as numbers, whose input keeps the images where the rows can find them: for
    an imported ONNX graph, a layer its ``batch_layouts`` names; a PyTorch module's layers are
    taken to see them on dimension 0."""
    lookup = _modules_by_param(model)
    graph = hasattr(model, "batch_layouts")  # an imported ONNX graph (core.onnx_import)
    layouts = getattr(model, "batch_layouts", None)
    if graph and layouts is None:  # its input size was open and no image has been seen yet
        return False
    for name in names:
        mod, pname = lookup.get(name, (None, None))
        if pname != "weight":
            return False
        if graph and name.rsplit(".", 1)[0] not in layouts:
            return False
        if isinstance(mod, nn.Linear):
            continue
        if (isinstance(mod, nn.Conv2d) and mod.padding_mode == "zeros"
                and isinstance(mod.padding, (tuple, int))):
            continue
        return False
    return True


def per_sample_gradients(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    names: list[str] | tuple[str, ...],
    *,
    chunk: int = 128,
    rows_per_sample: int = 1,
    method: str = "auto",
    out: torch.Tensor | None = None,
    columns: torch.Tensor | None = None,
    progress: ProgressFn | None = None,
    cancel: CancelToken | None = None,
) -> GradientMatrix:
    """Build G whose rows are per-sample gradients of the cross-entropy loss.

    ``rows_per_sample`` > 1 averages that many consecutive samples into one row
    (mini-batch-averaged rows, n = len(x) // rows_per_sample). ``method`` is ``"auto"``,
    ``"closed_form"``, ``"func"`` or ``"loop"`` (one backward pass per image: TorchScript
    modules, which neither take hooks per layer type nor torch.func's functional calls).
    ``columns``, a bool mask over the p weights, keeps only
    those columns (in order; e.g. the kept weights of a pruned network): G is then
    n × columns.sum() and ``offsets`` index that compact layout. The model is not modified
    (its parameters are only read; its training flag is restored).
    """
    if len(x) != len(y):
        raise StudioError("images and labels differ in length", field="calibration data")
    names = tuple(names)
    params = _named_weights(model, names)
    shapes = tuple(tuple(params[nm].shape) for nm in names)
    sizes = [_numel(s) for s in shapes]
    offsets = tuple(int(v) for v in torch.tensor([0] + sizes[:-1]).cumsum(0).tolist())
    p = sum(sizes)
    picks: list[torch.Tensor | None] = [None] * len(names)
    if columns is not None:
        if columns.numel() != p:
            raise ValueError(f"columns has {columns.numel()} entries for {p} weights")
        columns = columns.reshape(-1).bool()
        picks = [columns[o:o + sz].nonzero().squeeze(1) for o, sz in zip(offsets, sizes)]
        sizes = [len(ix) for ix in picks]
        offsets = tuple(int(v) for v in torch.tensor([0] + sizes[:-1]).cumsum(0).tolist())
        p = sum(sizes)
    m = max(1, rows_per_sample)
    n_rows = len(x) // m
    if n_rows == 0:
        raise StudioError("no calibration samples to compute gradients on", field="samples")
    x, y = x[: n_rows * m], y[: n_rows * m]
    if out is None:
        check_memory(n_rows, p)
        G = torch.empty(n_rows, p, dtype=torch.float32)
    else:
        if out.dtype != torch.float32 or out.dim() != 2 or out.shape[0] < n_rows or out.shape[1] != p:
            raise ValueError(f"out must be float32 with at least {n_rows} rows and {p} columns, "
                             f"not {out.dtype} {tuple(out.shape)}")
        G = out[:n_rows]
    # a chunk's gradients of every named weight exist once more before they are copied into G:
    # on a large network that copy, not G, would set the peak (chunk of 32 × 28 M weights: 3.5 GB)
    full = sum(_numel(s) for s in shapes)
    chunk = min(chunk, max(1, CHUNK_BYTES // (4 * full)))
    chunk = max(m, (chunk // m) * m)
    total_loss = 0.0
    with closing(gradient_chunks(model, x, y, names, chunk=chunk, method=method,
                                 cancel=cancel)) as chunks:
        for start, parts, loss in chunks:
            total_loss += loss
            b = min(chunk, len(x) - start)
            rows = G[start // m:(start + b) // m]
            for part, off, sz, pick in zip(parts, offsets, sizes, picks):  # straight into G
                part = part.reshape(b, -1)
                if pick is not None:
                    part = part.index_select(1, pick)
                if m > 1:
                    part = part.reshape(b // m, m, sz).mean(1)
                rows[:, off:off + sz] = part
            report(progress, "gradients", start + b, len(x), f"per-sample gradients {start + b}/{len(x)}")
    return GradientMatrix(G, names, shapes, offsets, total_loss / len(x),
                          tuple(sizes) if columns is not None else None)


def gradient_chunks(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    names: tuple[str, ...],
    *,
    chunk: int,
    method: str = "auto",
    cancel: CancelToken | None = None,
) -> Iterator[tuple[int, list[torch.Tensor], float]]:
    """Per-sample gradients ``chunk`` images at a time, as (first image's index, one tensor per
    name with a leading dimension of the chunk's images, the chunk's summed loss). The model is
    in eval mode while the chunks are made and restored after; it is never modified."""
    measure = getattr(model, "measure_batch_layouts", None)
    if method == "auto" and measure is not None and len(x):  # an ONNX graph of open input size
        with eval_mode(model):
            measure(tuple(x.shape[1:]))
    if method == "auto":
        method = ("closed_form" if supports_closed_form(model, names)
                  else "loop" if isinstance(model, torch.jit.ScriptModule) else "func")
    layouts = getattr(model, "batch_layouts", None)  # an imported graph measured its own
    if method == "closed_form" and layouts is None and len(x):
        # a PyTorch module: its layers are Linear and Conv2d, but a Linear may still see
        # (tokens, images, features), as in nn.Transformer without batch_first
        layouts = _module_layouts(model, tuple(x.shape[1:]), names)
        if not all(nm.rsplit(".", 1)[0] in layouts for nm in names):
            method = "func"
    make = {"closed_form": partial(_closed_form_chunk, layouts=layouts), "func": _func_chunk,
            "loop": _loop_chunk}.get(method)
    if make is None:
        raise ValueError(f"unknown gradient method {method!r}")
    with eval_mode(model):
        for start in range(0, len(x), chunk):
            check(cancel)
            parts, loss = make(model, x[start:start + chunk], y[start:start + chunk], names)
            yield start, parts, loss


@dataclass(frozen=True)
class FisherFactor:
    """A factor of the empirical Fisher, F̂ = AᵀA, and c with Aᵀc = the mean gradient."""

    A: torch.Tensor  # (rows, p) float32
    c: torch.Tensor  # (rows,) float64
    images: int  # calibration images behind it
    loss: float  # their mean loss


def fisher_factor(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    names: list[str] | tuple[str, ...],
    *,
    images_per_row: int = 1,
    columns: torch.Tensor | None = None,
    out: torch.Tensor | None = None,
    progress: ProgressFn | None = None,
    cancel: CancelToken | None = None,
) -> FisherFactor:
    """The empirical Fisher of the images ``x`` as A (F̂ = AᵀA, never formed) and c (Aᵀc = ḡ).

    B = ``images_per_row`` = 1: A = G/√n and c = 𝟙/√n, G the n per-sample gradients.

    B > 1 (mini-batch-averaged rows): the n = len(x) // B rows ḡ_j of G each average B images.
    Since Cov(ḡ_j) = Cov(g)/B, the centred rows scaled by √B estimate the per-sample covariance
    from all n·B images, and the mean gradient μ̂ adds back the rest of F = Cov + μμᵀ:

        A = [ √(B/n)(ḡ_1 − μ̂); … ; √(B/n)(ḡ_n − μ̂); μ̂ ]   ((n+1) × p),   c = e_{n+1}.

    Without the centring, B·ḡḡᵀ would add (B − 1)μμᵀ: a spurious curvature along the mean
    gradient, large wherever the network is far from a minimum (a pruned one). ``columns``
    keeps only some weights, as in :func:`per_sample_gradients`. ``out``, a float32 buffer of
    A's shape (a previous A no one reads any more), receives A instead of new memory: a CHITA++
    stage then skips the first-touch page faults of a fresh G (0.3–0.4 s per GB).
    """
    m = max(1, images_per_row)
    if m == 1:
        gm = per_sample_gradients(model, x, y, names, columns=columns, out=out,
                                  progress=progress, cancel=cancel)
        n = gm.G.shape[0]
        return FisherFactor(gm.G.div_(n ** 0.5), torch.full((n,), 1.0 / n**0.5, dtype=torch.float64),
                            n, gm.loss)
    n = len(x) // m
    if n == 0:
        raise StudioError(f"{len(x)} calibration images are fewer than the {m} images of one "
                          "gradient row", field="images per row", fix=f"use at most {len(x)}.")
    params = _named_weights(model, names)
    p = int(columns.sum()) if columns is not None else sum(params[nm].numel() for nm in names)
    if out is None:
        check_memory(n + 1, p)
        A = torch.empty(n + 1, p, dtype=torch.float32)
    else:
        A = out[: n + 1]
    gm = per_sample_gradients(model, x[: n * m], y[: n * m], names, rows_per_sample=m, out=A,
                              columns=columns, progress=progress, cancel=cancel)
    mu = gm.G.mean(0)
    gm.G.sub_(mu).mul_((m / n) ** 0.5)
    A[n] = mu
    c = torch.zeros(n + 1, dtype=torch.float64)
    c[n] = 1.0
    return FisherFactor(A, c, n * m, gm.loss)


def _closed_form_chunk(model: nn.Module, xb: torch.Tensor, yb: torch.Tensor, names: tuple[str, ...],
                       layouts: dict[str, BatchLayout] | None = None) -> tuple[list[torch.Tensor], float]:
    """Rows for one chunk, one tensor per layer (leading dim B): capture inputs a and output
    gradients δ of each layer, then δᵀa."""
    lookup = _modules_by_param(model)
    mods = [lookup[nm][0] for nm in names]
    acts: dict[int, torch.Tensor] = {}
    grads: dict[int, torch.Tensor] = {}
    calls = [0] * len(mods)
    handles = []

    def fwd_hook(idx: int):
        def hook(mod, inp, outp):
            calls[idx] += 1
            acts[idx] = inp[0].detach()
            if outp.requires_grad:
                outp.register_hook(lambda g: grads.__setitem__(idx, g.detach()))
        return hook

    for i, mod in enumerate(mods):
        handles.append(mod.register_forward_hook(fwd_hook(i)))
    req = {nm: p.requires_grad for nm, p in model.named_parameters()}
    try:
        for p in model.parameters():
            p.requires_grad_(False)
        xin = xb.detach().clone().requires_grad_(True)
        with torch.enable_grad():
            logits = as_logits(model, model(xin))
            losses = F.cross_entropy(logits, yb, reduction="none")
            losses.sum().backward()
    finally:
        for h in handles:
            h.remove()
        for nm, p in model.named_parameters():
            p.requires_grad_(req[nm])
    if any(c != 1 for c in calls) or len(grads) != len(mods):
        # a layer used twice (shared weights) or never called through its forward: the
        # outer-product form does not apply, so this chunk takes the general path
        return _func_chunk(model, xb, yb, names)
    B = len(xb)
    for i, nm in enumerate(names):  # the images first (attention's tokens, windows in the batch)
        layout = (layouts or {}).get(nm.rsplit(".", 1)[0], ("major",))
        acts[i], grads[i] = _images_first(acts[i], layout, B), _images_first(grads[i], layout, B)
        if acts[i] is None or grads[i] is None:  # not where the layout says: the general path
            return _func_chunk(model, xb, yb, names)
    parts = []
    for i, mod in enumerate(mods):
        a, g = acts[i], grads[i]
        if isinstance(mod, nn.Linear):
            if a.dim() > 2:  # sequences: sum over positions
                parts.append(torch.einsum("b...o,b...i->boi", g, a))
            else:
                parts.append(torch.bmm(g.unsqueeze(2), a.unsqueeze(1)))
        else:
            parts.append(conv_weight_rows(a, g, mod))
    return parts, float(losses.detach().sum())


BatchLayout = tuple
"""Where a layer's input keeps the images (see :func:`batch_layouts`): ``("major",)`` on dimension
0; ``("dim", k)`` on dimension k; ``("outer", m)`` folded into dimension 0 as image·m + j;
``("inner", m)`` folded into dimension 0 as j·images + image."""


def batch_layouts(model: nn.Module, shape: tuple[int, ...], layers: dict[str, nn.Module]) -> dict[str, BatchLayout]:
    """Where the input of each of ``layers`` (path → module) keeps the images, for images of
    ``shape``: found by running one random image, then the same image with another, and looking
    for the size that grew with the batch and for the first image's values in it.

    The closed-form rows are one product per image once the images are brought to the front
    (:func:`_images_first`); a Conv only with the images first. Layers called more than once or
    never, or where no layout gives back the first image's values, are left out (they take
    torch.func); so is every layer where the model does not run on these batches. The model's
    training flag is left as it was; nothing is modified."""
    seen: dict[str, list[torch.Tensor]] = {name: [] for name in layers}
    hooks = [m.register_forward_hook(lambda _m, inp, _out, name=name: seen[name].append(inp[0].detach().clone()))
             for name, m in layers.items()]
    gen = torch.Generator().manual_seed(0)
    first, other = torch.randn(1, *shape, generator=gen), torch.randn(1, *shape, generator=gen)
    try:
        with torch.no_grad(), eval_mode(model):
            model(first)
            model(torch.cat([first, other]))
    except Exception:  # noqa: BLE001 - e.g. a batch fixed in a graph: nothing is assumed
        return {}
    finally:
        for h in hooks:
            h.remove()
    out = {}
    for name, inputs in seen.items():
        layout = _layout(*inputs) if len(inputs) == 2 else None
        if layout is not None and (layout == ("major",) or isinstance(layers[name], nn.Linear)):
            out[name] = layout
    return out


def _layout(one: torch.Tensor, two: torch.Tensor) -> BatchLayout | None:
    """The layout under which ``two`` (a layer's input for 2 images) holds ``one`` (its input
    for the first of them alone) as its first image."""
    if one.dim() != two.dim():
        return None
    grown = [k for k in range(one.dim()) if one.shape[k] != two.shape[k]]
    if len(grown) != 1:
        return None
    k = grown[0]

    def same(part: torch.Tensor) -> bool:
        return part.shape == one.shape and torch.allclose(part, one, rtol=1e-4, atol=1e-5 * (1 + float(one.abs().max())))

    if one.shape[k] == 1 and two.shape[k] == 2:
        return (("major",) if k == 0 else ("dim", k)) if same(two.narrow(k, 0, 1)) else None
    m = one.shape[0]
    if k == 0 and two.shape[0] == 2 * m:
        if same(two[:m]):
            return ("outer", m)
        if same(two[0::2]):
            return ("inner", m)
    return None


_MODULE_LAYOUTS: "weakref.WeakKeyDictionary[nn.Module, dict]" = weakref.WeakKeyDictionary()
"""Per module, its :func:`batch_layouts` by (input shape, names); beside the module, not on it (an
attribute of that type would stop torch.jit.script of the module)."""


def _module_layouts(model: nn.Module, shape: tuple[int, ...], names: tuple[str, ...]) -> dict[str, BatchLayout]:
    """:func:`batch_layouts` of the layers behind ``names`` of a PyTorch module, measured once per
    module and input shape."""
    cache = _MODULE_LAYOUTS.setdefault(model, {})
    key = (tuple(shape), names)
    if key not in cache:
        lookup = _modules_by_param(model)
        layers = {nm.rsplit(".", 1)[0]: lookup[nm][0] for nm in names if nm in lookup}
        cache[key] = batch_layouts(model, tuple(shape), layers)
    return cache[key]


def _images_first(t: torch.Tensor, layout: tuple, images: int) -> torch.Tensor | None:
    """A layer's input or output gradient with the images on dimension 0, per ``layout``
    (:data:`BatchLayout`); None where its sizes do not fit it."""
    kind = layout[0]
    if kind == "major":
        return t if t.shape[0] == images else None
    if kind == "dim":
        k = layout[1]
        return t.movedim(k, 0) if t.dim() > k and t.shape[k] == images else None
    m = layout[1]
    if t.shape[0] != m * images:
        return None
    if kind == "outer":  # image·m + j
        return t.reshape(images, m, *t.shape[1:])
    return t.reshape(m, images, *t.shape[1:]).movedim(1, 0)  # "inner": j·images + image


SHIFT_MIN_POSITIONS = 256  # output positions from which per-offset products beat one im2col


def conv_weight_rows(a: torch.Tensor, g: torch.Tensor, conv: nn.Conv2d) -> torch.Tensor:
    """Per-sample weight gradients of a Conv2d, (B, C_out, C_in/groups·kh·kw).

    With input a (B, C_in, H, W) and output gradient δ (B, C_out, H', W'), the gradient of
    sample b at kernel offset (i, j) is δ_b · a_b[shifted by (i, j)]ᵀ. For large feature maps
    one batched product per offset is 3–4× faster on CPU than ``F.unfold`` (which materialises
    the kh·kw-fold patch matrix): at stride 1 over shifted slices of the flattened padded
    input (:func:`_rows_flat`, no copy per offset), otherwise over strided views
    (:func:`_rows_offsets`). For small maps a single product over an ``as_strided`` patch view
    is faster (:func:`_rows_patches`). All equal the im2col form up to float rounding.

    A grouped convolution is ``groups`` independent convolutions, group γ taking input
    channels γ·C_in/groups … and giving output channels γ·C_out/groups …: its rows are those
    of one convolution of B·groups groups over the batch laid side by side
    (:func:`_grouped_rows`).
    """
    if conv.groups > 1:
        return _grouped_rows(a, g, conv)
    kh, kw = conv.kernel_size
    Ho, Wo = g.shape[2:]
    if Ho * Wo >= SHIFT_MIN_POSITIONS and kh * kw > 1:
        return _rows_flat(a, g, conv) if tuple(conv.stride) == (1, 1) else _rows_offsets(a, g, conv)
    return _rows_patches(a, g, conv)


def _grouped_rows(a: torch.Tensor, g: torch.Tensor, conv: nn.Conv2d) -> torch.Tensor:
    """:func:`conv_weight_rows` of a grouped (or depthwise) convolution: the batch folded into
    the groups. Sample b's group γ is group b·groups + γ of one convolution over a single
    image of B·C_in channels, so torch's weight-gradient kernel for that convolution returns
    every sample's gradient at once (``benchmarks/grouped_conv_gradients.py``)."""
    B, C, H, W = a.shape
    O, Ho, Wo = g.shape[1:]
    rows = conv2d_weight(a.reshape(1, B * C, H, W), (B * O, C // conv.groups, *conv.kernel_size),
                         g.reshape(1, B * O, Ho, Wo), conv.stride, conv.padding, conv.dilation,
                         B * conv.groups)
    return rows.reshape(B, O, -1)


def _rows_offsets(a: torch.Tensor, g: torch.Tensor, conv: nn.Conv2d) -> torch.Tensor:
    """:func:`conv_weight_rows`, one product per kernel offset over strided views of the
    padded input (each view is copied into a matrix first)."""
    B, C = a.shape[:2]
    O, Ho, Wo = g.shape[1:]
    kh, kw = conv.kernel_size
    sh, sw = conv.stride
    dh, dw = conv.dilation
    ph, pw = conv.padding  # type: ignore[misc]  # tuple: supports_closed_form excludes strings
    gg = g.reshape(B, O, Ho * Wo)
    ap = F.pad(a, (pw, pw, ph, ph)) if (ph or pw) else a
    out = torch.empty(B, O, C, kh, kw, dtype=gg.dtype)
    for i in range(kh):
        for j in range(kw):
            xs = ap[:, :, i * dh: i * dh + sh * (Ho - 1) + 1: sh,
                    j * dw: j * dw + sw * (Wo - 1) + 1: sw]
            out[:, :, :, i, j] = torch.bmm(gg, xs.reshape(B, C, Ho * Wo).transpose(1, 2))
    return out.reshape(B, O, C * kh * kw)


def _rows_flat(a: torch.Tensor, g: torch.Tensor, conv: nn.Conv2d) -> torch.Tensor:
    """:func:`conv_weight_rows` for stride 1, one product per kernel offset without copies.

    Lay the padded input out as a (H_p·W_p) × C matrix per sample (channels last) and δ on the
    same padded-width grid, zero in the W_p − W' columns no output occupies: output position
    q = h·W_p + w then reads input row q + i·d_h·W_p + j·d_w at offset (i, j), so each offset's
    input is a contiguous run of rows of one matrix, a view that ``bmm`` takes as it is. The
    zero columns add exact zeros; the product runs over (H'−1)·W_p + W' rows instead of H'·W'.
    """
    B, C = a.shape[:2]
    O, Ho, Wo = g.shape[1:]
    kh, kw = conv.kernel_size
    dh, dw = conv.dilation
    ph, pw = conv.padding  # type: ignore[misc]
    ap = F.pad(a.permute(0, 2, 3, 1), (0, 0, pw, pw, ph, ph)).contiguous()  # B × H_p × W_p × C
    Hp, Wp = ap.shape[1:3]
    flat = ap.view(B, Hp * Wp, C)
    rows = (Ho - 1) * Wp + Wo
    d = g.new_zeros(B, Ho, Wp, O)
    d[:, :, :Wo] = g.permute(0, 2, 3, 1)
    dT = d.view(B, Ho * Wp, O)[:, :rows].transpose(1, 2)  # B × O × rows
    out = torch.empty(B, O, C, kh, kw, dtype=g.dtype)
    for i in range(kh):
        for j in range(kw):
            start = i * dh * Wp + j * dw
            out[:, :, :, i, j] = torch.bmm(dT, flat[:, start:start + rows])
    return out.reshape(B, O, C * kh * kw)


def _rows_patches(a: torch.Tensor, g: torch.Tensor, conv: nn.Conv2d) -> torch.Tensor:
    """:func:`conv_weight_rows` as one product over an ``as_strided`` patch view (im2col
    without ``F.unfold``), for small feature maps."""
    B, C = a.shape[:2]
    O, Ho, Wo = g.shape[1:]
    kh, kw = conv.kernel_size
    sh, sw = conv.stride
    dh, dw = conv.dilation
    ph, pw = conv.padding  # type: ignore[misc]
    gg = g.reshape(B, O, Ho * Wo)
    ap = (F.pad(a, (pw, pw, ph, ph)) if (ph or pw) else a).contiguous()
    sB, sC, sH, sW = ap.stride()
    patches = ap.as_strided((B, C, kh, kw, Ho, Wo), (sB, sC, dh * sH, dw * sW, sh * sH, sw * sW))
    return torch.bmm(gg, patches.reshape(B, C * kh * kw, Ho * Wo).transpose(1, 2))


def _func_chunk(model: nn.Module, xb: torch.Tensor, yb: torch.Tensor,
                names: tuple[str, ...]) -> tuple[list[torch.Tensor], float]:
    """Rows for one chunk with torch.func (vmap over grad of a functional call), per layer."""
    from torch.func import functional_call, grad, vmap

    params = {k: v.detach() for k, v in model.named_parameters()}
    buffers = {k: v.detach() for k, v in model.named_buffers()}
    fixed = {k: v for k, v in params.items() if k not in names}
    free = {k: params[k] for k in names}

    def loss_fn(free_p, xi, yi):
        out = functional_call(model, ({**fixed, **free_p}, buffers), (xi.unsqueeze(0),))
        return F.cross_entropy(as_logits(model, out), yi.unsqueeze(0))

    g = vmap(grad(loss_fn), in_dims=(None, 0, 0))(free, xb, yb)
    with torch.no_grad():
        loss = float(F.cross_entropy(as_logits(model, model(xb)), yb, reduction="sum"))
    return [g[k] for k in names], loss


def _loop_chunk(model: nn.Module, xb: torch.Tensor, yb: torch.Tensor,
                names: tuple[str, ...]) -> tuple[list[torch.Tensor], float]:
    """Rows for one chunk one image at a time: a batch-1 forward and backward pass each.

    The path for TorchScript modules, whose submodules are not ``nn.Linear``/``nn.Conv2d`` (no
    closed form) and which torch.func cannot call with other parameters. Exact, as the others:
    BatchNorm is in eval mode, so an image's gradient does not depend on the rest of the batch.
    """
    params = dict(model.named_parameters())
    wanted = [params[nm] for nm in names]
    req = {nm: p.requires_grad for nm, p in params.items()}
    rows = [torch.zeros((len(xb), *p.shape), dtype=torch.float32) for p in wanted]
    total = 0.0
    try:
        for p in wanted:
            if p.is_leaf:
                p.requires_grad_(True)
        for i in range(len(xb)):
            loss = F.cross_entropy(as_logits(model, model(xb[i:i + 1])), yb[i:i + 1])
            for row, g in zip(rows, torch.autograd.grad(loss, wanted, allow_unused=True)):
                if g is not None:  # a weight the output does not depend on has a zero row
                    row[i] = g
            total += float(loss.detach())
    finally:
        for nm, p in params.items():
            if p.is_leaf:
                p.requires_grad_(req[nm])
    return rows, total


def fisher_diagonal(G: torch.Tensor, block: int = 65536) -> torch.Tensor:
    """diag(GᵀG/n): the empirical Fisher's diagonal, column block by column block."""
    n, p = G.shape
    out = torch.empty(p, dtype=torch.float32)
    for j in range(0, p, block):
        gb = G[:, j:j + block]
        out[j:j + block] = (gb * gb).sum(0) / n
    return out


def streamed_fisher_diagonal(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    names: list[str] | tuple[str, ...],
    *,
    budget_bytes: int | None = None,
    chunk: int = 128,
    progress: ProgressFn | None = None,
    cancel: CancelToken | None = None,
) -> torch.Tensor:
    """diag(GᵀG/n) over the samples (x, y) without holding G: the rows are made a chunk of
    samples at a time (:func:`gradient_chunks`) and only their squares are kept, so a network of
    any size gets its diagonal Fisher in the memory of one chunk (at most ``chunk`` samples,
    ``CHUNK_BYTES`` of rows and half the available RAM). Equal to
    ``fisher_diagonal(per_sample_gradients(...).G)`` up to the order of the sums."""
    names = tuple(names)
    params = _named_weights(model, names)
    sizes = [params[nm].numel() for nm in names]
    offsets = [sum(sizes[:i]) for i in range(len(sizes))]
    p = sum(sizes)
    budget = budget_bytes if budget_bytes is not None else available_memory_bytes() // 2
    # a chunk's rows exist once (at most CHUNK_BYTES), with one layer's block sum beside them
    block = max(1, min(chunk, len(x), CHUNK_BYTES // (4 * max(p, 1)),
                       int(budget / (max(p, 1) * 4 * 2))))
    total = torch.zeros(p, dtype=torch.float64)
    with closing(gradient_chunks(model, x, y, names, chunk=block, cancel=cancel)) as chunks:
        for start, parts, _ in chunks:
            stop = min(start + block, len(x))
            for part, off, sz in zip(parts, offsets, sizes):
                # squares added row by row in place into a float32 block sum, then into the
                # float64 total (one float64 reduction over the rows took 10× as long: 25 of
                # ConvNeXt-T's 37 s for 256 images)
                acc = torch.zeros(sz, dtype=torch.float32)
                for row in part.reshape(len(part), -1):
                    acc.addcmul_(row, row)
                total[off:off + sz] += acc
            report(progress, "gradients", stop, len(x), f"per-sample gradients {stop}/{len(x)}")
    return (total / max(1, len(x))).to(torch.float32)

