"""Every setting of head selection and routing, with its default, in one torch-free module: the
trainers (:mod:`.weights`, :mod:`.labels`, :mod:`.router`, :mod:`.knn_router`,
:mod:`.soft_router`) take these dataclasses, and the command line reads its defaults from them,
so each default is written once and ``--help`` does not import torch."""
from __future__ import annotations

from dataclasses import dataclass, fields

from ..errors import UserError

NORMALISATIONS = ("zscore", "none")
LOSSES = ("pointwise", "pairwise", "listwise")
CV_BY = ("query", "group")
PENALTIES = ("l1", "l2")
VOTES = ("count", "similarity")
#: Heads of the QRHead-style static set, and heads routed per query when a router learns soft targets.
STATIC_SET_SIZE = 16
#: Share of training queries a router holds out for early stopping.
VAL_FRACTION = 0.2


class RouterError(UserError, ValueError):
    """A router that cannot be trained, loaded or used as asked (bad data, wrong model, bad file)."""


@dataclass(frozen=True)
class SearchParams:
    """How labels are searched (stored in the labels file's header)."""

    beam: int = 4
    max_size: int = 8
    min_gain: float = 1e-9
    normalise: str = "zscore"
    k: int = 10

    def __post_init__(self):
        if self.beam < 1 or self.max_size < 1 or self.k < 1:
            raise ValueError("beam, max_size and k must be at least 1")
        if self.min_gain < 0:
            raise ValueError("min_gain must not be negative")
        if self.normalise not in NORMALISATIONS:
            raise ValueError(f"normalise must be one of {NORMALISATIONS}, got {self.normalise!r}")


@dataclass(frozen=True)
class TrainConfig:
    """How weights are trained and lambda is chosen (recorded in the weights file)."""

    loss: str = "pairwise"
    penalty: str = "l1"
    lambdas: tuple[float, ...] | None = None  # None: the default grid (module docstring)
    folds: int = 5
    fold_seed: int = 0
    relevance_level: int = 1  # pointwise: grade >= this is a positive
    k: int = 10
    cv_by: str = "query"  # "query": k folds by a hash of the qid; "group": one fold per collection (leave one out)
    patience: int | None = None  # stop the lambda path after this many points without a better CV mean (None: all)
    max_iter: int = 2000
    tol: float = 1e-6

    def __post_init__(self):
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, got {self.loss!r}")
        if self.penalty not in PENALTIES:
            raise ValueError(f"penalty must be one of {PENALTIES}, got {self.penalty!r}")
        if self.folds < 2:
            raise ValueError("cross-validation needs at least 2 folds")
        if self.cv_by not in CV_BY:
            raise ValueError(f"cv_by must be one of {CV_BY}, got {self.cv_by!r}")
        if self.lambdas is not None and (not self.lambdas or any(v < 0 for v in self.lambdas)):
            raise ValueError("lambdas must be a non-empty list of values >= 0")


@dataclass
class RouterConfig:
    """Hyper-parameters of the router, its training and its inference."""

    head_dim: int = 64  # size of the query projection and of each head embedding
    hidden: int = 0  # 0: linear projection d -> head_dim; else one GELU hidden layer of this size
    dropout: float = 0.1  # on the standardised query embedding
    sparsity: float = 0.1  # lambda: weight of mean(sigmoid(logits)) in the loss
    pos_weight: float | str = 1.0  # BCE weight of positive labels; "auto": negatives / positives per head
    pos_weight_cap: float = 50.0  # upper bound of the "auto" pos_weight
    lr: float = 3e-3
    weight_decay: float = 1e-2  # AdamW, on all parameters but biases
    epochs: int = 300
    batch_size: int = 64
    patience: int = 30  # epochs without a better validation loss before stopping
    min_delta: float = 1e-5  # improvement below this does not count
    seed: int = 0
    embedding_layer: int | None = None  # the query-embedding layer (None: the model's middle layer)
    embedding_pooling: str = "mean"
    embedding_template: bool = False
    top_k: int | None = None  # heads per query at inference (None: mean label-set size in training)
    threshold: float | None = None  # if set, route to heads with probability >= threshold instead

    def __post_init__(self):
        if self.head_dim < 1 or self.hidden < 0 or self.epochs < 1 or self.batch_size < 1 or self.patience < 1:
            raise RouterError("head_dim, epochs, batch_size and patience must be positive and hidden >= 0")
        if not 0.0 <= self.dropout < 1.0:
            raise RouterError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.sparsity < 0:
            raise RouterError(f"the sparsity weight must be >= 0, got {self.sparsity}")
        if not (self.pos_weight == "auto" or (isinstance(self.pos_weight, (int, float)) and self.pos_weight > 0)):
            raise RouterError(f"pos_weight must be a positive number or 'auto', got {self.pos_weight!r}")
        if self.top_k is not None and self.top_k < 1:
            raise RouterError(f"top_k must be at least 1, got {self.top_k}")
        if self.threshold is not None and not 0.0 < self.threshold < 1.0:
            raise RouterError(f"threshold must be in (0, 1), got {self.threshold}")

    @classmethod
    def from_dict(cls, values: dict) -> RouterConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})


@dataclass
class SoftRouterConfig:
    """Hyper-parameters of soft routing (the network's come from :class:`RouterConfig`)."""

    loss: str = "pointwise"  # a :data:`.weights.LOSSES` name
    relevance_level: int = 1  # pointwise loss: the smallest positive grade
    sparsity: float = 1e-3  # weight of mean_q sum_h |w_qh|
    head_dim: int = 16
    dropout: float = 0.1
    lr: float = 1e-3
    weight_decay: float = 1e-2  # on the projection and head embeddings (not on biases or fusion weights)
    epochs: int = 300
    patience: int = 30
    val_fraction: float = VAL_FRACTION
    seed: int = 0
    top_k: int = STATIC_SET_SIZE  # heads kept per query at inference, by |weight|
    embedding_layer: int | None = None
    embedding_pooling: str = "mean"
    static_patience: int | None = None  # the static step's lambda path stops after this many points without a better CV mean

    def __post_init__(self):
        TrainConfig(loss=self.loss)  # validates the loss name
        if self.sparsity < 0 or self.top_k < 1 or self.epochs < 1 or self.patience < 1 or self.head_dim < 1:
            raise RouterError("sparsity must be >= 0 and top_k, epochs, patience, head_dim positive")
        if not 0.0 <= self.val_fraction < 1.0:
            raise RouterError(f"val_fraction must be in [0, 1), got {self.val_fraction}")

    def router_config(self) -> RouterConfig:
        return RouterConfig(head_dim=self.head_dim, dropout=self.dropout, sparsity=self.sparsity, lr=self.lr,
                            weight_decay=self.weight_decay, epochs=self.epochs, patience=self.patience, seed=self.seed,
                            embedding_layer=self.embedding_layer, embedding_pooling=self.embedding_pooling, top_k=self.top_k)


@dataclass
class KnnConfig:
    """Settings of a kNN router (the embedding fields mirror :class:`RouterConfig`)."""

    k: int = 10  # neighbours per query
    vote: str = "count"  # "count": weight 1 per neighbour; "similarity": weight max(cosine, 0)
    top_m: int | None = None  # heads per query (None: mean label-set size in training)
    standardise: bool = True  # per-dimension standardisation with training statistics before cosine
    embedding_layer: int | None = None
    embedding_pooling: str = "mean"
    embedding_template: bool = False

    def __post_init__(self):
        if int(self.k) < 1:
            raise RouterError(f"k must be at least 1, got {self.k}")
        if self.vote not in VOTES:
            raise RouterError(f"vote must be one of {VOTES}, got {self.vote!r}")
        if self.top_m is not None and int(self.top_m) < 1:
            raise RouterError(f"top_m must be at least 1, got {self.top_m}")

    @classmethod
    def from_dict(cls, values: dict) -> KnnConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})
