"""Shared neural networks: counterparts of torch.nn ``Linear``, ``Sigmoid``, ``ReLU``, ``Tanh``, ``Sequential``,
``BCELoss`` and ``MSELoss`` whose parameters stay secret-shared, and ``from_torch`` to convert a plain module.

    model = smpc.nn.from_torch(torch_model, session, owner=0)   # every party passes the same architecture
    criterion = smpc.nn.BCELoss()
    optimizer = smpc.optim.SGD(model.parameters(), lr=0.1)
    for xb, yb in batches:                                        # SharedTensors
        loss = criterion(model(xb), yb)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    plain = model.reveal(to=0)                                    # torch module on party 0, None elsewhere

Gradients are derived by hand, layer by layer, not traced.  A traced autograd over SharedTensors would record
every product and replay its adjoint, paying a Beaver round trip for each node and keeping every
intermediate; the closed forms below need fewer products (a sigmoid's derivative is s (1 - s) from its output,
not the adjoint of its polynomial approximation), and the BCE + Sigmoid pair collapses to (p - y) / N with no
log and no division.  Each layer's ``forward`` caches exactly what its ``backward`` needs; ``backward``
consumes the cache (a second backward without a new forward raises, as torch does without retain_graph).
Models outside these layers can use ``smpc.autograd`` (``requires_grad_()`` and ``backward()`` on
SharedTensors), whose backward rules reuse forward results the same way; the BCE shortcut's gradient is checked
against that generic graph in tests/smpc/test_autograd.py.

Online rounds (R_sigmoid, R_tanh: those of ``SharedTensor.sigmoid`` and ``.tanh``, 13 each at the time of
writing; products with truncation cost 2 rounds):

==================  ======================  ============================================================
layer               forward                 backward
==================  ======================  ============================================================
Linear              2 (one matmul)          2 (grad_W = g^T x) + 2 if the input gradient is needed
                                            (grad_x = g W, after grad_W); grad_b = sum g is local
ReLU                9 (mask = [x > 0], 8;   1 (where(mask, g, 0): a bit product, no truncation); relu()
                    where(mask, x, 0), 1)   costs the same 9 rounds but drops the mask
Sigmoid             R_sigmoid               4 (g * (s (1 - s))), or 0 after BCELoss (shortcut below)
Tanh                R_tanh                  4 (g * (1 - t^2))
BCELoss + Sigmoid   --                      1 ((p - y) / N: one exact division)
MSELoss             --                      1 (2 (out - y) / N: one exact division)
==================  ======================  ============================================================

So a logistic-regression step (Linear(d, 1), Sigmoid, BCELoss, SGD) costs 2 + R_sigmoid forward, 3 backward
(the first layer needs no input gradient) and 1 for ``SGD.step``: 19 rounds.

Weights come from one owner (``from_torch(module, session, owner=r)``: every party passes a module of the same
architecture, only the owner's values are used) or are drawn jointly so that nobody knows them
(``from_torch(module, session)`` without an owner, or ``Linear(session, d_in, d_out, init="joint")``: every
party's contribution comes from its own CSPRNG).

Fixed-point limits apply to every intermediate: |v| < 2^int_bits, products included (x W^T, g^T x summed over
the batch).
"""

from smpc.nn.convert import from_torch
from smpc.nn.init import InitDraws, joint_init_contribution
from smpc.nn.layers import Linear, ReLU, Sigmoid, Tanh
from smpc.nn.loss import BCELoss, Loss, MSELoss
from smpc.nn.module import ModelOutput, Module, Parameter, Sequential

__all__ = [
    "BCELoss",
    "InitDraws",
    "Linear",
    "Loss",
    "MSELoss",
    "Module",
    "ModelOutput",
    "Parameter",
    "ReLU",
    "Sequential",
    "Sigmoid",
    "Tanh",
    "from_torch",
    "joint_init_contribution",
]
