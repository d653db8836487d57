"""Optimizers over shared parameters: ``SGD`` and ``Adam`` with torch.optim's semantics.

Hyper-parameters are public; parameters, gradients and every per-parameter buffer stay shared.  A step
batches every parameter's products into one flat vector per operation (SGD: one truncation; Adam: one
truncation, one shared product, one ``rsqrt`` and one shared product, see ``Adam``).  ``state_dict`` /
``load_state_dict`` use torch's layout, with SharedTensors for the buffers (shares are never opened).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import torch

from smpc.autograd import no_grad
from smpc.nn import Parameter
from smpc.tensor import SharedTensor, cat

__all__ = ["SGD", "Adam"]


class _Optimizer:
    """What SGD and Adam share: the parameter list, ``zero_grad`` and torch's state-dict layout.

    ``state`` maps each Parameter to its buffers (torch's optimizer.state); subclasses name their
    hyper-parameters (``_hyper``, ``_set_hyper``) and buffers (``_buffer_names``), and check a loaded
    per-parameter entry beyond its shared buffers (``_check_entry``).
    """

    _buffer_names: tuple[str, ...] = ()

    def __init__(self, params: Iterable[Parameter]) -> None:
        self.params = list(params)
        if not self.params:
            raise ValueError("optimizer got an empty parameter list")
        for parameter in self.params:
            if not isinstance(parameter, Parameter):
                raise TypeError(f"{type(self).__name__} takes smpc.nn Parameters (model.parameters()), "
                                f"got {type(parameter).__name__}")
        self.state: dict[Parameter, dict[str, Any]] = {}

    def zero_grad(self) -> None:
        """Drop every gradient (torch's default set_to_none=True)."""
        for parameter in self.params:
            parameter.grad = None

    def _hyper(self) -> dict[str, Any]:
        raise NotImplementedError

    def _set_hyper(self, group: Mapping[str, Any]) -> None:
        raise NotImplementedError

    def _check_entry(self, index: int, entry: Mapping[str, Any]) -> None:
        """Checks of a loaded state entry other than its buffers (none by default)."""

    def state_dict(self) -> dict[str, Any]:
        """torch's layout: {"state": {index: {buffer name: SharedTensor, ...}}, "param_groups": [{hyper-parameters,
        "params": [0, 1, ...]}]}, indices in parameter order; no communication, nothing opened."""
        state = {index: dict(self.state[parameter]) for index, parameter in enumerate(self.params)
                 if parameter in self.state}
        return {"state": state, "param_groups": [{**self._hyper(), "params": list(range(len(self.params)))}]}

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Take hyper-parameters and buffers from ``state_dict`` (as torch does); ValueError, in one line, for a
        parameter count, buffer name, shape or session that does not match this optimizer's parameters."""
        name = type(self).__name__
        if not isinstance(state_dict, Mapping) or set(state_dict) != {"state", "param_groups"}:
            raise ValueError(f"{name} state dict must have exactly the keys 'state' and 'param_groups'")
        groups = state_dict["param_groups"]
        if not isinstance(groups, list) or len(groups) != 1:
            raise ValueError(f"{name} state dict must have exactly one parameter group")
        group = dict(groups[0])
        indices = group.pop("params", None)
        if indices != list(range(len(self.params))):
            count = len(indices) if isinstance(indices, list) else "no"
            raise ValueError(f"{name} state dict holds {count} parameters, this optimizer has {len(self.params)}")
        if set(group) != set(self._hyper()):
            raise ValueError(f"{name} state dict hyper-parameters {sorted(group)} != {sorted(self._hyper())}")
        state = {index: self._loaded_entry(index, entry) for index, entry in dict(state_dict["state"]).items()}
        self._set_hyper(group)
        self.state = {self.params[index]: entry for index, entry in state.items()}

    def _loaded_entry(self, index: Any, entry: Any) -> dict[str, Any]:
        name = type(self).__name__
        if not isinstance(index, int) or not 0 <= index < len(self.params):
            raise ValueError(f"{name} state dict has state for parameter {index!r}, not one of "
                             f"0..{len(self.params) - 1}")
        if not isinstance(entry, Mapping):
            raise ValueError(f"{name} state of parameter {index} must be a dict, got {type(entry).__name__}")
        parameter = self.params[index]
        for key in self._buffer_names:
            buffer = entry.get(key)
            if not isinstance(buffer, SharedTensor):
                raise ValueError(f"{name} state of parameter {index} needs a SharedTensor {key!r}")
            if buffer.shape != parameter.shape:
                raise ValueError(f"{name} state {key!r} of parameter {index} has shape {tuple(buffer.shape)}, "
                                 f"the parameter {tuple(parameter.shape)}")
            if buffer.session is not parameter.session:
                raise ValueError(f"{name} state {key!r} of parameter {index} belongs to another session")
        self._check_entry(index, entry)
        extra = set(entry) - set(self._buffer_names) - {"step"}
        if extra:
            raise ValueError(f"{name} state of parameter {index} has unknown entries {sorted(extra)}")
        return dict(entry)


def _check_non_negative(values: Mapping[str, float]) -> None:
    for name, value in values.items():
        if not float(value) >= 0.0:
            raise ValueError(f"invalid {name}: {value}")


class SGD(_Optimizer):
    """Stochastic gradient descent, as torch.optim.SGD (dampening 0, no Nesterov):

        g = grad + weight_decay * param
        buf = g on the first step, else momentum * buf + g        (only if momentum != 0)
        param = param - lr * (buf if momentum != 0 else g)

    Parameters whose ``grad`` is None are skipped.  ``step`` evaluates this as
        buf' = momentum * buf + weight_decay * param + grad
        param' = param - (lr weight_decay) * param - (lr momentum) * buf - lr * grad
    with every public-coefficient product of every parameter batched into one truncation.
    Rounds per step: 1.  Error: below one unit in the last place per product, plus the encoding of each
    coefficient (2^-(frac_bits+1)) times the value it multiplies.
    ``state[parameter]["momentum_buffer"]`` is the shared buffer (as torch); ``state_dict()`` gives
    {"state": {i: {"momentum_buffer": SharedTensor}}, "param_groups": [{"lr", "momentum", "weight_decay",
    "params": [0, 1, ...]}]}.
    """

    _buffer_names = ("momentum_buffer",)

    def __init__(self, params: Iterable[Parameter], lr: float, momentum: float = 0.0,
                 weight_decay: float = 0.0) -> None:
        _check_non_negative({"learning rate": lr, "momentum": momentum, "weight_decay": weight_decay})
        super().__init__(params)
        self.lr, self.momentum, self.weight_decay = float(lr), float(momentum), float(weight_decay)

    def _hyper(self) -> dict[str, Any]:
        return {"lr": self.lr, "momentum": self.momentum, "weight_decay": self.weight_decay}

    def _set_hyper(self, group: Mapping[str, Any]) -> None:
        _check_non_negative({"learning rate": group["lr"], "momentum": group["momentum"],
                             "weight_decay": group["weight_decay"]})
        self.lr, self.momentum, self.weight_decay = (float(group["lr"]), float(group["momentum"]),
                                                     float(group["weight_decay"]))

    def step(self) -> None:
        """One update of every parameter that has a gradient (1 round)."""
        lr, momentum, decay = self.lr, self.momentum, self.weight_decay
        products = _PublicProducts()
        plans = []
        for parameter in self.params:
            grad = parameter.grad
            if grad is None:
                continue
            value = parameter.data
            buffer = self.state.get(parameter, {}).get("momentum_buffer")
            # Indices of the products each new value is made of.
            param_terms = [products.add(value, lr * decay), products.add(grad, lr)]
            buffer_terms = []
            if momentum != 0.0:
                buffer_terms.append(products.add(value, decay))
                if buffer is not None:
                    param_terms.append(products.add(buffer, lr * momentum))
                    buffer_terms.append(products.add(buffer, momentum))
            plans.append((parameter, value, grad, param_terms, buffer_terms))
        results = products.compute()
        for parameter, value, grad, param_terms, buffer_terms in plans:
            parameter.data = _minus_all(value, [results[i] for i in param_terms])
            if momentum != 0.0:
                self.state.setdefault(parameter, {})["momentum_buffer"] = _plus_all(
                    grad, [results[i] for i in buffer_terms]
                )


class Adam(_Optimizer):
    """Adam, as torch.optim.Adam (no amsgrad, no maximize; weight decay added to the gradient, not AdamW):

        g = grad + weight_decay * param
        m = beta1 m + (1 - beta1) g,   v = beta2 v + (1 - beta2) g^2,   t = this parameter's step count
        param = param - lr * m_hat / (sqrt(v_hat) + eps),   m_hat = m / (1 - beta1^t),  v_hat = v / (1 - beta2^t)

    Fixed point holds 2^-16 at best, so g^2 of a gradient of 1e-3 (1e-6) is below one unit and eps = 1e-8 is
    not representable.  Hence the moments are kept BIAS-CORRECTED and SCALED by public powers of two,
    S = 2^scale_bits:  M = S m_hat  and  X = S^2 v_hat  (``state``'s "exp_avg" and "exp_avg_sq" hold M and X,
    not torch's m and v).  Bias-corrected moments are convex combinations (a_t + c_t = 1 below), so X never
    exceeds the largest S^2 g^2 seen, and a rounding error of one step is not magnified by 1/(1 - beta^t).
    With a_t = beta (1 - beta^(t-1)) / (1 - beta^t) and c_t = (1 - beta) / (1 - beta^t) (beta1 for M, beta2
    for X), and 2^-k the power of two nearest lr, a step of every parameter that has a gradient is:
      1. One batched truncation of public-coefficient products (all parameters in one flat vector):
         M' = a1 M + c1 S grad + c1 S wd param,   K = sqrt(c2) S (grad + wd param),
         L = lr 2^k M' (the same three products with coefficients times lr 2^k),   A = a2 X.
      2. One shared product (flat): X' = A + K * K  (= S^2 v_hat).
      3. One ``rsqrt`` (flat): r = 1 / sqrt(X' + e),  e = max(S^2 eps^2, 2^-frac_bits).
      4. One shared product left unscaled, then one truncation by 2^(frac_bits + k):  U = L r / 2^k
         = lr M' / sqrt(X' + e) = lr m_hat / sqrt(v_hat + eps_eff^2),  eps_eff = max(eps, 2^-(frac_bits/2 +
         scale_bits));  param' = param - U.
    With ``clip`` (the default), step 0 first makes g = grad + wd param (one truncation, only if wd != 0) and
    clamps it to +-G, G = 2^(int_bits/2 - scale_bits) (1 - 2^-6) = 1.39 by default (9 rounds), then runs 1-4
    on g with no decay.  Rounds per step (measured, asserted in tests/smpc/test_optim.py):
        dealer family:      24 = 1 + 2 + 19 + 2 without clip;  33 with clip (34 with weight decay)
        replicated family:  26 without clip (its truncations cost 2, one of them taken into rsqrt);  31 with
                            clip (33 with weight decay), while the clamp compares at most 1,024 values (up
                            to 512 parameters; its comparison takes 3 rounds, not 8); 36 (38) above
    Parameters whose ``grad`` is None are skipped (their step count does not advance, as torch).

    Where it matches torch.  eps enters as sqrt(v_hat + eps_eff^2) instead of sqrt(v_hat) + eps: the two agree
    to a relative eps_eff / sqrt(v_hat), eps_eff = 2^-15 = 3e-5 with the defaults (not 1e-8).  Error, u =
    2^-frac_bits, against exact arithmetic on the encoded values (H = S |g|):
      * M: each step adds at most 3 u (three truncated terms), carried with weight a1 < 1:
        |M - S m_hat| <= 3 u min(t, 1/(1 - beta1)).
      * X: each step adds at most (2 + 4 H) u (A and K K truncated, K off by 2 u), carried with weight a2 < 1:
        |X - S^2 v_hat| <= (2 + 4 max H) u min(t, 1/(1 - beta2)).
      * r: rsqrt's bound, |r - 1/sqrt(X' + e)| <= 1.2e-4 / sqrt(X' + e) + 1.5 u (``INV_SQRT_ERROR``).
      * U: the errors above times r, plus 3 u r / 2^k (L) and one truncation (u).
    So the step's relative error is at most about 1.2e-4 + 1.5 u H + dX / (2 X) + dM / |M|, below 1 % where
    H^2 >= 100 (2 + 4 H) u min(t, 1/(1 - beta2)): for H >= 0.13 over the first 20 steps, H >= 6.6 after
    1/(1 - beta2) = 1000 steps (with scale_bits = 7: |g| >= 1e-3, resp. 0.05).  These bounds let every rounding
    err the same way; the truncations round up or down at random, so their sum typically grows as sqrt(t) and
    the step stays accurate well below these sizes.  Below, the step's error grows as 1 / H^2 but the step
    stays bounded (r <= 1 / sqrt(e) = 256): raise scale_bits for smaller gradients.
    Outside it, said plainly: H^2 must fit the fixed-point range, H < 2^(int_bits/2) (|g| < 2^(7.5 -
    scale_bits) = 1.41 by default).  With ``clip`` larger gradients are clamped to G first (torch with the
    gradient clamped to G: what the tests check); with ``clip=False`` the product K * K wraps and the step is
    WRONG, silently, unless the session has ``check_range=True``, which raises smpc.RangeError.  The product
    L r also needs |m_hat| / sqrt(v_hat + eps_eff^2) < 2^int_bits / 1.42 (23,000 by default); that ratio is a
    few units for the betas torch trains with.
    ``state_dict()``: {"state": {i: {"step": int, "exp_avg": SharedTensor M, "exp_avg_sq": SharedTensor X}},
    "param_groups": [{"lr", "betas", "eps", "weight_decay", "scale_bits", "clip", "params": [0, 1, ...]}]}.
    """

    _buffer_names = ("exp_avg", "exp_avg_sq")

    def __init__(self, params: Iterable[Parameter], lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0, *, scale_bits: int = 7, clip: bool = True) -> None:
        super().__init__(params)
        self._set_hyper({"lr": lr, "betas": betas, "eps": eps, "weight_decay": weight_decay,
                         "scale_bits": scale_bits, "clip": clip})
        encoding = self.params[0].session.encoding
        if 2 * self.scale_bits >= encoding.int_bits + encoding.frac_bits:
            raise ValueError(f"scale_bits {self.scale_bits} leaves no room in the fixed-point range "
                             f"(2 scale_bits < int_bits + frac_bits = {encoding.int_bits + encoding.frac_bits})")

    def _hyper(self) -> dict[str, Any]:
        return {"lr": self.lr, "betas": self.betas, "eps": self.eps, "weight_decay": self.weight_decay,
                "scale_bits": self.scale_bits, "clip": self.clip}

    def _set_hyper(self, group: Mapping[str, Any]) -> None:
        lr, eps, decay, bits = group["lr"], group["eps"], group["weight_decay"], group["scale_bits"]
        _check_non_negative({"learning rate": lr, "epsilon value": eps, "weight_decay": decay})
        betas = tuple(group["betas"])
        if len(betas) != 2 or not all(0.0 <= float(beta) < 1.0 for beta in betas):
            raise ValueError(f"invalid betas: {group['betas']} (two values in [0, 1))")
        if not isinstance(bits, int) or isinstance(bits, bool) or not 0 <= bits <= 23:
            raise ValueError(f"invalid scale_bits: {bits!r} (an integer in 0..23)")
        if not isinstance(group["clip"], bool):
            raise ValueError(f"invalid clip: {group['clip']!r} (True or False)")
        self.lr, self.eps, self.weight_decay, self.scale_bits = float(lr), float(eps), float(decay), bits
        self.clip = group["clip"]
        self.betas = (float(betas[0]), float(betas[1]))

    def _check_entry(self, index: int, entry: Mapping[str, Any]) -> None:
        step = entry.get("step")
        if not isinstance(step, int) or isinstance(step, bool) or step < 1:
            raise ValueError(f"Adam state of parameter {index} needs an integer 'step' >= 1, got {step!r}")

    def step(self) -> None:
        """One update of every parameter that has a gradient (rounds: see the class docstring)."""
        with no_grad():
            self._step()

    def _step(self) -> None:
        """The step itself (under no_grad)."""
        live = [parameter for parameter in self.params if parameter.grad is not None]
        if not live:
            return
        session = live[0].session
        frac_bits = session.encoding.frac_bits
        shift = 0 if self.lr == 0.0 else round(-math.log2(self.lr))
        products = _PublicProducts()
        grads, decay = self._gradients(live)
        plans = [self._plan(parameter, grad, decay, products, self.lr * 2.0**shift)
                 for parameter, grad in zip(live, grads)]
        results = products.compute()
        moments = [_total(results, plan.moment, plan.value) for plan in plans]
        scaled = cat([_total(results, plan.square, plan.value).reshape(-1) for plan in plans])
        decayed = cat([_total(results, plan.decayed, plan.value).reshape(-1) for plan in plans])
        squares = decayed + scaled * scaled
        floor = max((self.eps * 2.0**self.scale_bits) ** 2, 2.0**-frac_bits)
        inverse_roots = (squares + floor).rsqrt()
        updates = None
        if self.lr != 0.0:
            rates = cat([_total(results, plan.rate, plan.value).reshape(-1) for plan in plans])
            updates = rates.mul_unscaled(inverse_roots).rescale(1 << (frac_bits + shift))
        offset = 0
        for plan, moment in zip(plans, moments):
            shape, size = plan.value.shape, plan.value.numel()
            self.state[plan.parameter] = {"step": plan.step, "exp_avg": moment,
                                          "exp_avg_sq": squares[offset : offset + size].reshape(shape)}
            if updates is not None:
                plan.parameter.data = plan.value - updates[offset : offset + size].reshape(shape)
            offset += size

    def _gradients(self, live: list[Parameter]) -> tuple[list[SharedTensor], float]:
        """The gradients and the weight decay step 1 applies: as they are, or (``clip``) g = grad + wd param
        clamped to +-limit (one truncation if wd != 0, then 9 rounds) with no decay left to apply."""
        grads = [parameter.grad for parameter in live if parameter.grad is not None]
        if not self.clip:
            return grads, self.weight_decay
        flat = cat([grad.reshape(-1) for grad in grads])
        if self.weight_decay != 0.0:
            flat = flat + cat([parameter.data.reshape(-1) for parameter in live]) * self.weight_decay
        limit = self.gradient_limit(live[0].session.encoding.int_bits)
        flat = flat.clamp(-limit, limit)
        parts, offset = [], 0
        for parameter in live:
            parts.append(flat[offset : offset + parameter.numel()].reshape(parameter.shape))
            offset += parameter.numel()
        return parts, 0.0

    def gradient_limit(self, int_bits: int) -> float:
        """The largest |grad + wd param| a step handles: 2^(int_bits/2 - scale_bits) less 1/64 for rounding."""
        return 2.0 ** (int_bits / 2 - self.scale_bits) * (1.0 - 2.0**-6)

    def _plan(self, parameter: Parameter, grad: SharedTensor, decay: float, products: _PublicProducts,
              rate: float) -> _AdamPlan:
        """Register one parameter's step-1 products (see the class docstring)."""
        entry = self.state.get(parameter, {})
        step = int(entry.get("step", 0)) + 1
        (beta1, beta2), scale = self.betas, 2.0**self.scale_bits
        keep1, new1 = _bias_corrected(beta1, step)
        keep2, new2 = _bias_corrected(beta2, step)
        value = parameter.data
        plan = _AdamPlan(parameter, value, step, [], [], [], [])
        previous = entry.get("exp_avg")
        for coefficient, terms in ((1.0, plan.moment), (rate, plan.rate)):
            if previous is not None:
                terms.append(products.add(previous, coefficient * keep1))
            terms.append(products.add(grad, coefficient * new1 * scale))
            terms.append(products.add(value, coefficient * new1 * scale * decay))
        root = math.sqrt(new2) * scale
        plan.square += [products.add(grad, root), products.add(value, root * decay)]
        squares = entry.get("exp_avg_sq")
        if squares is not None:
            plan.decayed.append(products.add(squares, keep2))
        return plan


@dataclass
class _AdamPlan:
    """One parameter's part of an Adam step: indices into the batched products of each new value."""

    parameter: Parameter
    value: SharedTensor
    step: int
    moment: list[int]
    rate: list[int]
    square: list[int]
    decayed: list[int]


def _bias_corrected(beta: float, step: int) -> tuple[float, float]:
    """(a_t, c_t): the bias-corrected moment of step t is a_t (that of step t-1) + c_t (new term)."""
    done = 1.0 - beta**step
    return beta * (1.0 - beta ** (step - 1)) / done, (1.0 - beta) / done


def _total(results: list[SharedTensor | None], indices: list[int], like: SharedTensor) -> SharedTensor:
    """Sum of the products at ``indices`` (skipping zero-coefficient ones); a public zero like ``like`` if none."""
    terms = [term for term in (results[index] for index in indices) if term is not None]
    if not terms:
        return like.session.public(torch.zeros(like.shape, dtype=torch.float64))
    total = terms[0]
    for term in terms[1:]:
        total = total + term
    return total


class _PublicProducts:
    """Products of SharedTensors with public floats, all opened in one batched truncation."""

    def __init__(self) -> None:
        self._terms: list[tuple[SharedTensor, float]] = []

    def add(self, tensor: SharedTensor, coefficient: float) -> int:
        self._terms.append((tensor, coefficient))
        return len(self._terms) - 1

    def compute(self) -> list[SharedTensor | None]:
        """The products in order (None for a zero coefficient: no term)."""
        live = [(index, tensor, c) for index, (tensor, c) in enumerate(self._terms) if c != 0.0]
        results: list[SharedTensor | None] = [None] * len(self._terms)
        if not live:
            return results
        flat = cat([tensor.reshape(-1) for _, tensor, _ in live])
        coefficients = torch.cat(
            [torch.full((tensor.numel(),), c, dtype=torch.float64) for _, tensor, c in live]
        )
        product = flat * coefficients
        offset = 0
        for index, tensor, _ in live:
            results[index] = product[offset : offset + tensor.numel()].reshape(tensor.shape)
            offset += tensor.numel()
        return results


def _minus_all(start: SharedTensor, terms: list[SharedTensor | None]) -> SharedTensor:
    for term in terms:
        if term is not None:
            start = start - term
    return start


def _plus_all(start: SharedTensor, terms: list[SharedTensor | None]) -> SharedTensor:
    for term in terms:
        if term is not None:
            start = start + term
    return start
