"""The revealed model as a file anyone can run in plain torch: a TorchScript module (``smpc reveal-model
--out model.pt``) that takes RAW rows, strings in the model's column order, and returns the probability of
the positive label, with the schema's encoding and the training run's standardisation inside it.

Load and run it without smpc::

    model = torch.jit.load("model.pt")
    model.columns                                  # ['duration_in_month', ..., 'purpose', ...]
    model([["12", "1169", ..., "radio/tv", ...]])  # tensor([0.1234], dtype=torch.float64)

The function of a row is the one training and the secure test predictions computed: numeric value / public
scale, one-hot categories, then ``(x - mean) * inverse_std`` on the numeric features (the jointly computed
statistics, revealed with the weights; identity for a model trained with public standardisation), then the
layers.  The module's attributes: ``columns`` (input order: numeric columns, then categorical),
``scales``, ``categories`` (per categorical column), ``label``, ``positive``, ``classes`` (a multi-class
model's, in output order; empty for a binary one, whose output is one probability per row), ``clip`` (True for a model
trained on clipped rows: values beyond a scale are clipped and unknown categories encode as none; otherwise
both raise), ``standardise`` ("joint" or "public"); buffers ``mean`` and ``inverse_std``; ``network`` (a
torch.nn.Sequential of Linear, Tanh, ReLU, Sigmoid in float64).  Methods: ``forward(rows)``, ``encode(rows)``
(the N x D features before standardisation, as ``Schema.encode``), ``score(features)``.  The file also holds
an extra file ``smpc.json`` (``META_FILE``): the share files' meta (format, parties, protocol, fractional
bits, layout, schema, standardise), without the training settings.
"""

# No ``from __future__ import annotations`` here: TorchScript reads the class annotations of ``RawRowModel`` as
# types at scripting time, and strings such as 'list[str]' are unknown to it.
import contextlib
import json
import math
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from smpc.loan.rows import schema_columns
from smpc.loan.schema import DataError, Schema

#: Extra file of the TorchScript archive holding the model's public meta (JSON).
META_FILE = "smpc.json"
#: Meta keys copied into the archive (the training settings stay out: they name each host's files).
META_KEYS = ("format", "parties", "protocol", "frac_bits", "layout", "schema", "standardise")
_ACTIVATIONS = {"Tanh": torch.nn.Tanh, "Sigmoid": torch.nn.Sigmoid, "ReLU": torch.nn.ReLU}


class RawRowModel(torch.nn.Module):
    """Raw rows (lists of strings, ``columns`` order) to the probability of the positive label (TorchScript)."""

    columns: list[str]
    scales: list[float]
    categories: list[list[str]]
    lookup: list[dict[str, int]]
    label: str
    positive: str
    classes: list[str]
    clip: bool
    standardise: str
    n_numeric: int
    n_features: int
    mean: torch.Tensor
    inverse_std: torch.Tensor

    def __init__(self, schema: Schema, network: torch.nn.Sequential, mean: torch.Tensor, inverse_std: torch.Tensor,
                 *, clip: bool, standardise: str) -> None:
        super().__init__()
        self.columns = schema_columns(schema)
        self.scales = [float(scale) for _, scale in schema.numeric]
        self.categories = [list(categories) for _, categories in schema.categorical]
        self.lookup = [{category: index for index, category in enumerate(categories)}
                       for _, categories in schema.categorical]
        self.label, self.positive, self.classes = schema.label, schema.positive, list(schema.classes)
        self.clip, self.standardise = clip, standardise
        self.n_numeric, self.n_features = len(schema.numeric), schema.n_features
        self.network = network
        self.register_buffer("mean", mean.detach().to(torch.float64).reshape(-1).clone())
        self.register_buffer("inverse_std", inverse_std.detach().to(torch.float64).reshape(-1).clone())

    def forward(self, rows: list[list[str]]) -> torch.Tensor:
        """Probability of the positive label for each raw row (float64, one per row), or for a multi-class
        model each class's probability (N x K, the schema's class order)."""
        return self.score(self.encode(rows))

    @torch.jit.export
    def encode(self, rows: list[list[str]]) -> torch.Tensor:
        """The schema's features of raw rows (N x D float64): value / scale, then one-hot categories."""
        features = torch.zeros(len(rows), self.n_features, dtype=torch.float64)
        for index, row in enumerate(rows):
            if len(row) != len(self.columns):
                raise ValueError("row " + str(index + 1) + ": " + str(len(row)) + " values for "
                                 + str(len(self.columns)) + " columns")
            for column in range(self.n_numeric):
                features[index, column] = self._numeric(row[column].strip(), column, index) / self.scales[column]
            offset = self.n_numeric
            for position in range(len(self.categories)):
                value = row[self.n_numeric + position].strip()
                lookup = self.lookup[position]
                if value in lookup:
                    features[index, offset + lookup[value]] = 1.0
                elif not self.clip:
                    raise ValueError("row " + str(index + 1) + ": " + value + " is not a category of column "
                                     + self.columns[self.n_numeric + position])
                offset += len(self.categories[position])
        return features

    def _numeric(self, text: str, column: int, index: int) -> float:
        value = float(text)
        scale = self.scales[column]
        if math.isnan(value):
            raise ValueError("row " + str(index + 1) + ": column " + self.columns[column] + " is not a number")
        if abs(value) > scale:
            if not self.clip:
                raise ValueError("row " + str(index + 1) + ": column " + self.columns[column]
                                 + " exceeds the schema's scale " + str(scale))
            value = min(max(value, -scale), scale)
        return value

    @torch.jit.export
    def score(self, features: torch.Tensor) -> torch.Tensor:
        """Probability of the positive label from encoded features (N x D): standardise, then the layers (a
        multi-class model: the softmax of its logits, N x K)."""
        numeric = (features[:, : self.n_numeric] - self.mean) * self.inverse_std
        inputs = torch.cat([numeric, features[:, self.n_numeric :]], dim=1)
        output = self.network(inputs)
        if len(self.classes) > 0:
            return torch.softmax(output, 1)
        return output.reshape(-1)


def network_of(layout: list[dict[str, Any]], values: dict[str, torch.Tensor]) -> torch.nn.Sequential:
    """A float64 torch.nn.Sequential of ``layout`` (the share files' ``meta["layout"]``) holding ``values``
    (state_dict names, as ``combine_shares`` returns them); parameters frozen (no gradients)."""
    layers: list[torch.nn.Module] = []
    for entry in layout:
        if entry.get("type") == "Linear":
            layers.append(torch.nn.Linear(int(entry["in"]), int(entry["out"]), dtype=torch.float64))
        elif entry.get("type") in _ACTIVATIONS:
            layers.append(_ACTIVATIONS[entry["type"]]())
        else:
            raise DataError(f"a model layer of type {entry.get('type')!r}: model files hold Linear, Tanh, ReLU and "
                            "Sigmoid layers")
    network = torch.nn.Sequential(*layers)
    weights = {name: value for name, value in values.items() if not name.startswith("standardise.")}
    try:
        network.load_state_dict({name: value.to(torch.float64) for name, value in weights.items()})
    except RuntimeError as error:
        raise DataError(f"the model's weights do not fit its layout: {str(error).splitlines()[0]}") from None
    network.requires_grad_(False)
    return network


def raw_row_model(meta: dict[str, Any], values: dict[str, torch.Tensor]) -> RawRowModel:
    """The plain model of revealed share files (``combine_shares``'s meta and values)."""
    schema = Schema.from_dict(meta["schema"])
    network = network_of(meta["layout"], values)
    last = network[-1] if len(network) else None
    if schema.classes and not (isinstance(last, torch.nn.Linear) and last.out_features == len(schema.classes)):
        raise DataError(f"the model does not end with {len(schema.classes)} logits, one per class of its schema")
    if not schema.classes and not isinstance(last, torch.nn.Sigmoid):
        raise DataError("the model does not end with a Sigmoid: it gives no probability")
    n_numeric = len(schema.numeric)
    if meta.get("standardise") == "joint":
        mean, inverse_std = values["standardise.mean"], values["standardise.inverse_std"]
    else:
        mean, inverse_std = torch.zeros(n_numeric), torch.ones(n_numeric)
    if tuple(mean.shape) != (n_numeric,) or tuple(inverse_std.shape) != (n_numeric,):
        raise DataError(f"the standardiser has {tuple(mean.shape)} values for {n_numeric} numeric columns")
    clip = meta.get("config", {}).get("dp_epsilon") is not None
    return RawRowModel(schema, network, mean, inverse_std, clip=clip, standardise=str(meta.get("standardise")))


@contextlib.contextmanager
def _quiet_jit() -> Iterator[None]:
    """torch 2.13 marks torch.jit deprecated in favour of torch.export, which cannot take rows of strings; the
    TorchScript format stays loadable in every torch 2.x (the range setup.cfg allows), so the warning is muted
    around our own calls only."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*torch\.jit.* is deprecated", category=DeprecationWarning)
        yield


def save_scripted(model: RawRowModel, meta: dict[str, Any], path: str | Path) -> Path:
    """``model`` as a TorchScript archive at ``path``, with the public meta as the extra file ``smpc.json``."""
    public = {key: meta[key] for key in META_KEYS if key in meta}
    public["clip"] = model.clip
    with _quiet_jit():
        scripted = torch.jit.script(model)
        torch.jit.save(scripted, str(path), _extra_files={META_FILE: json.dumps(public)})
    return Path(path)


def load_scripted(path: str | Path) -> tuple[torch.jit.ScriptModule, Schema, dict[str, Any]]:
    """The TorchScript model at ``path``, its schema and its meta (``smpc.json``); DataError if it is not one."""
    extra = {META_FILE: ""}
    if not Path(path).is_file():
        raise DataError(f"{path}: no such file")
    try:
        with _quiet_jit():
            module = torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
        meta = json.loads(extra[META_FILE])
        schema = Schema.from_dict(meta["schema"])
    except (RuntimeError, ValueError, KeyError, TypeError) as error:
        detail = (str(error).splitlines() or [type(error).__name__])[0].split(". ")[0]
        raise DataError(f"{path}: not a model written by smpc reveal-model --out ({detail})") from None
    return module, schema, meta


def check_finite(probabilities: torch.Tensor) -> None:
    """Refuse a non-finite prediction (a corrupt model): never a silent NaN in a predictions file."""
    if not all(math.isfinite(value) for value in probabilities.reshape(-1).tolist()):
        raise DataError("the model gave a non-finite probability: the model file is damaged")
