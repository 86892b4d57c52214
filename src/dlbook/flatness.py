"""Flatness of a trained network: loss along a line, top Hessian eigenvalue and trace, random-perturbation sharpness.

Topic module; imports only the core. Every function takes a plain `nn.Module` and data x (N, ...),
y (N,) and evaluates the mean cross-entropy of the module as a function of its parameters.

Used by chapters: 13.
"""

from __future__ import annotations

import copy
import warnings

import numpy as np
import torch
import torch.nn.functional as F
from torch.func import functional_call, grad, jvp

from . import checks
from .runtime import torch_generator


def flat_params(model) -> torch.Tensor:
    """All parameters of `model` as one detached vector (P,)."""
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()])


def unflatten(model, theta: torch.Tensor) -> dict:
    """{name: tensor} of `model`'s parameter shapes cut from the vector theta (P,)."""
    total = sum(p.numel() for p in model.parameters())
    if theta.numel() != total:
        raise ValueError(f"theta has {theta.numel()} entries, the model {total} parameters")
    out, i = {}, 0
    for name, p in model.named_parameters():
        out[name] = theta[i:i + p.numel()].view_as(p)
        i += p.numel()
    return out


def loss_function(model, x: torch.Tensor, y: torch.Tensor):
    """theta (P,) -> mean cross-entropy of `model` (eval mode) with parameters theta on (x, y)."""
    checks.tensor("x", x)
    checks.tensor("y", y, ndim=1)
    checks.same_length(x=x, y=y)
    base = copy.deepcopy(model).eval()
    dev = flat_params(base).device
    x, y = x.to(dev), y.to(dev)
    return lambda theta: F.cross_entropy(functional_call(base, unflatten(base, theta), (x,)), y)


def _hessian_vector(f, theta: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """H v (P,) of f at theta, reverse-over-reverse: the gradient of g(theta)^T v, g the gradient of f.

    On a CPU this is about 2x faster than forward-over-reverse (torch.func.jvp of torch.func.grad)
    for the MLPs of chapter 13, and equal to it to float rounding (tested).
    """
    with torch.enable_grad():
        t = theta.detach().requires_grad_()
        (g,) = torch.autograd.grad(f(t), t, create_graph=True)
        (hv,) = torch.autograd.grad(g @ v.to(g.dtype), t)
    return hv.detach()


def _hessian_vector_fwd(f, theta: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """H v (P,) of f at theta, forward-over-reverse (torch.func): the reference for _hessian_vector."""
    with warnings.catch_warnings():
        # torch's first forward-mode call registers decompositions with torch.jit.script, which
        # warns of its own deprecation: internal to torch, nothing a reader can act on
        warnings.filterwarnings("ignore", message=".*torch.jit.script.*deprecated", category=FutureWarning)
        return jvp(grad(f), (theta,), (v,))[1]


def hvp(model, x: torch.Tensor, y: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Hessian-vector product H v (P,) of the training loss at the model's parameters (reverse-over-reverse)."""
    return _hessian_vector(loss_function(model, x, y), flat_params(model), v)


def top_eigenvalue(model, x: torch.Tensor, y: torch.Tensor, *, iters: int = 20, seed: int = 0) -> float:
    """Largest-magnitude eigenvalue of the loss Hessian by power iteration on Hessian-vector products.

    Returns the Rayleigh quotient v^T H v of the last normalized iterate v.
    """
    checks.positive_int("iters", iters)
    f = loss_function(model, x, y)
    theta = flat_params(model)
    hv = lambda v: _hessian_vector(f, theta, v)  # noqa: E731
    v = torch.randn(theta.shape, generator=torch_generator(seed), dtype=theta.dtype)
    v = v / v.norm()
    for _ in range(iters):
        w = hv(v)
        v = w / w.norm()
    return float(v @ hv(v))


def perturbed_loss_rise(model, x: torch.Tensor, y: torch.Tensor, *, radius: float, relative: bool = True,
                        draws: int = 10, seed: int = 0) -> np.ndarray:
    """Loss rises (draws,) L(theta + d) - L(theta) for d uniform on a sphere about theta.

    The sphere's radius is `radius` * ||theta|| when `relative`, else `radius`.
    """
    radius = checks.positive("radius", radius)
    checks.boolean("relative", relative)
    checks.positive_int("draws", draws)
    f = loss_function(model, x, y)
    theta = flat_params(model)
    r = radius * float(theta.norm()) if relative else radius
    g = torch_generator(seed)
    with torch.no_grad():
        base = float(f(theta))
        rises = []
        for _ in range(draws):
            u = torch.randn(theta.shape, generator=g, dtype=theta.dtype)
            rises.append(float(f(theta + r * u / u.norm())) - base)
    return np.array(rises)


def tensorwise_loss_rise(model, x: torch.Tensor, y: torch.Tensor, *, rho: float, draws: int = 10,
                         seed: int = 0) -> np.ndarray:
    """Loss rises (draws,) when every parameter tensor theta_t moves by rho * ||theta_t|| in a random direction.

    Each tensor's share of the perturbation is its own norm, so a rescaling that multiplies some
    tensors by c and others by 1/c moves the perturbation with them: the rise does not change.
    """
    rho = checks.positive("rho", rho)
    checks.positive_int("draws", draws)
    f = loss_function(model, x, y)
    theta = flat_params(model)
    sizes = [p.numel() for p in model.parameters()]
    g = torch_generator(seed)
    with torch.no_grad():
        base = float(f(theta))
        rises = []
        for _ in range(draws):
            u = torch.randn(theta.shape, generator=g, dtype=theta.dtype)
            d = torch.cat([rho * t.norm() * v / v.norm() for t, v in zip(theta.split(sizes), u.split(sizes))])
            rises.append(float(f(theta + d)) - base)
    return np.array(rises)


def hessian_trace(model, x: torch.Tensor, y: torch.Tensor, *, probes: int = 20, seed: int = 0) -> tuple[float, float]:
    """Hutchinson's estimate of the loss Hessian's trace, mean of v^T H v over Rademacher v: (estimate, SE)."""
    checks.positive_int("probes", probes)
    f = loss_function(model, x, y)
    theta = flat_params(model)
    g = torch_generator(seed)
    samples = []
    for _ in range(probes):
        v = torch.randint(2, theta.shape, generator=g).to(theta.dtype) * 2 - 1
        samples.append(float(v @ _hessian_vector(f, theta, v)))
    s = np.array(samples)
    return float(s.mean()), float(s.std(ddof=1) / np.sqrt(probes)) if probes > 1 else float("nan")


def line_losses(start, end, x: torch.Tensor, y: torch.Tensor, *, alphas) -> dict:
    """Loss and accuracy (A,) of the parameters (1 - alpha) theta_start + alpha theta_end, per alpha."""
    t0, t1 = flat_params(start), flat_params(end)
    if t0.shape != t1.shape:
        raise ValueError(f"start and end must have the same parameters, got {t0.numel()} and {t1.numel()}")
    base = copy.deepcopy(end).eval()
    x, y, t0 = x.to(t1.device), y.to(t1.device), t0.to(t1.device)
    loss, acc = [], []
    with torch.no_grad():
        for a in alphas:
            out = functional_call(base, unflatten(base, (1 - a) * t0 + a * t1), (x,))
            loss.append(float(F.cross_entropy(out, y)))
            acc.append(float((out.argmax(1) == y).double().mean()))
    return {"alpha": np.asarray(alphas, dtype=float), "loss": np.array(loss), "acc": np.array(acc)}


def rescale_hidden(model, c: float, *, first: str = "fc1", second: str = "fc2"):
    """A copy of `model` with layer `first` (weight, bias) times c > 0 and layer `second`'s weight over c.

    relu(c z) = c relu(z) for c > 0, so the copy computes the same function.
    """
    c = checks.positive("c", c)
    out = copy.deepcopy(model)
    with torch.no_grad():
        getattr(out, first).weight.mul_(c)
        getattr(out, first).bias.mul_(c)
        getattr(out, second).weight.div_(c)
    return out


def balance_layers(model, *, first: str = "fc1", second: str = "fc2"):
    """The rescale_hidden copy of `model` whose layer `first` (weight and bias) and `second`'s weight have equal norms."""
    a = torch.cat([getattr(model, first).weight.detach().flatten(), getattr(model, first).bias.detach()]).norm()
    b = getattr(model, second).weight.detach().norm()
    return rescale_hidden(model, float((b / a).sqrt()), first=first, second=second)


def sharpness(model, x: torch.Tensor, y: torch.Tensor, *, rho: float, radius: float, draws: int = 20,
              iters: int = 20, probes: int = 20, seed: int = 0) -> dict:
    """Training loss, weight norm, top Hessian eigenvalue, Hessian trace (Hutchinson) and mean loss rises.

    Rises: global relative radius rho * ||theta||, absolute `radius`, and per tensor (rho * ||theta_t||).
    `probes` = 0 leaves out the trace.
    """
    checks.nonnegative_int("probes", probes)
    f = loss_function(model, x, y)
    with torch.no_grad():
        loss = float(f(flat_params(model)))
    rel = perturbed_loss_rise(model, x, y, radius=rho, relative=True, draws=draws, seed=seed)
    ab = perturbed_loss_rise(model, x, y, radius=radius, relative=False, draws=draws, seed=seed)
    per = tensorwise_loss_rise(model, x, y, rho=rho, draws=draws, seed=seed)
    out = {"train loss": loss, "weight norm": weight_norm(model),
           "top eigenvalue": top_eigenvalue(model, x, y, iters=iters, seed=seed)}
    if probes:
        out["Hessian trace"] = hessian_trace(model, x, y, probes=probes, seed=seed)[0]
    return out | {"rise, relative": float(rel.mean()), "rise, absolute": float(ab.mean()),
                  "rise, per tensor": float(per.mean())}


def weight_norm(model) -> float:
    """Euclidean norm of all parameters of `model`."""
    return float(flat_params(model).norm())
