"""Shared neural networks: counterparts of torch.nn's layers and losses whose parameters stay secret-shared,
and ``from_torch`` to convert a plain module with its weights.

    model = smpc.nn.from_torch(torch_model, session, owner=0)   # every party passes the same architecture
    criterion = smpc.nn.CrossEntropyLoss()
    optimizer = smpc.optim.SGD(model.parameters(), lr=0.1)
    for xb, yb in batches:                                        # SharedTensors (yb: shared one-hot rows)
        loss = criterion(model(xb), yb)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    plain = model.reveal(to=0)                                    # torch module on party 0, None elsewhere

Parameters are ``smpc.nn.Parameter``s: leaf SharedTensors that require a gradient.  A layer's ``forward`` is
made of SharedTensor operations, so ``smpc.autograd`` records it and derives the backward pass; each backward
rule reuses forward results where they are cheaper (a sigmoid's derivative s (1 - s) from its output, ReLU's
and max pooling's comparison bits), and nothing is opened to compute a gradient.  A data batch does not require
a gradient, so the first layer's input gradient is never computed.  Losses seed the backward pass with their
closed-form gradients (``smpc.nn.loss``): BCE after a Sigmoid hands the Sigmoid's input (p - y) / N, with no
log and no division, and the Sigmoid's own backward is skipped; cross-entropy hands the logits
(softmax - target) / N.

Online rounds (R_f: rounds of SharedTensor.f; a product with truncation costs 2 rounds in the replicated family,
and a comparison of up to 1,024 elements 3 there instead of 8, so ReLU's 9 are 5 and Dropout's 9 are 5):

==================  ======================  ============================================================
layer               forward                 backward
==================  ======================  ============================================================
Linear              2 (one matmul)          2 (grad_W = (x^T g)^T) + 2 if the input needs a gradient
                                            (grad_x = g W); grad_b = sum g is local
ReLU                9                       1 (a product with the forward's comparison bit)
Sigmoid             R_sigmoid               4 (g * (s (1 - s))), or 0 after BCELoss (shortcut above)
Tanh                R_tanh                  4 (g * (1 - t^2))
Conv1d, Conv2d      2 (im2col, one matmul)  2 for the weight, 2 more for the input if it needs one
MaxPool2d           tournament of ltz       1 (routing by the comparison bits)
AvgPool2d, Flatten  1 / 0                   1 / 0
Softmax             R_softmax               4
LogSoftmax          R_log_softmax           R_exp + 2
BCELoss + Sigmoid   --                      1 ((p - y) / N: one exact division)
MSELoss             --                      1 (2 (out - y) / N: one exact division)
CrossEntropyLoss    --                      R_softmax + 1
Dropout, p = 1/2    9 (a joint mask: one    1 (a product with the mask bit); other p: 16-17 rounds
                    comparison; a bit       forward, 2-3 backward (dealer-replicated)
                    product)
BatchNorm (train)   28 (dealer; 29 repl.)   7 (one closed-form node; 8 replicated); eval forward 23 (24)
==================  ======================  ============================================================

So a logistic-regression step (Linear(d, 1), Sigmoid, BCELoss, SGD) costs 2 + R_sigmoid forward, 3 backward
(the first layer needs no input gradient) and 1 for ``SGD.step``.

Weights come from one owner (``from_torch(module, session, owner=r)``: every party passes a module of the same
architecture, only the owner's values are used) or are drawn jointly so that nobody knows them
(``from_torch(module, session)`` without an owner, or ``Linear(session, d_in, d_out, init="joint")``: every
party's contribution comes from its own CSPRNG).

Fixed-point limits apply to every intermediate: |v| < 2^int_bits, products included (x W^T, g^T x summed over
the batch).
"""

from smpc.nn.conv import AvgPool2d, Conv1d, Conv2d, Flatten, LogSoftmax, MaxPool2d, Softmax
from smpc.nn.convert import from_torch
from smpc.nn.init import InitDraws, joint_init_contribution
from smpc.nn.layers import Linear, ReLU, Sigmoid, Tanh
from smpc.nn.loss import BCELoss, BCEWithLogitsLoss, CrossEntropyLoss, Loss, MSELoss, NLLLoss
from smpc.nn.module import Module, Parameter, Sequential
from smpc.nn.normalization import BatchNorm1d, BatchNorm2d, Dropout
from smpc.nn.traced import Traced

__all__ = [
    "AvgPool2d",
    "BatchNorm1d",
    "BatchNorm2d",
    "BCELoss",
    "BCEWithLogitsLoss",
    "Conv1d",
    "Conv2d",
    "CrossEntropyLoss",
    "Dropout",
    "Flatten",
    "InitDraws",
    "Linear",
    "LogSoftmax",
    "Loss",
    "MSELoss",
    "MaxPool2d",
    "Module",
    "NLLLoss",
    "Parameter",
    "ReLU",
    "Sequential",
    "Sigmoid",
    "Softmax",
    "Tanh",
    "Traced",
    "from_torch",
    "joint_init_contribution",
]
