"""Helpers shared by tests in several folders: a word-level tokenizer and query list for the tiny
random models, and the router's synthetic clustered problem."""
from __future__ import annotations

import torch
from transformers import AutoModelForCausalLM

from conftest import tiny_llama_config
from routehead_pyserini.engine.attention import register
from routehead_pyserini.engine.models import wrap_model

WORDS = ("the a of to in is what how why who when where fleas dogs cats live long eat sleep capital city "
         "france paris python code list sort river moon earth orbit tower iron music piano").split()

QUERIES = ["how long do fleas live", "what is the capital of france", "python sort list", "moon",
           "why do cats sleep so long in the city", "where is the iron tower", "who plays piano music",
           "earth orbit"]


def word_tokenizer():
    """A word-level fast tokenizer (offsets, BOS) over WORDS, for the tiny random models."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<pad>": 0, "<bos>": 1, "<unk>": 2, **{w: i + 3 for i, w in enumerate(WORDS)}}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=backend, bos_token="<bos>", pad_token="<pad>", unk_token="<unk>")


def clustered(n: int, *, d: int = 64, shape=(4, 4), k: int = 6, set_size: int = 3, seed: int = 0, problem_seed: int = 123,
              noise: float = 0.0):
    """Queries from ``k`` clusters in ``d`` dims; cluster ``c``'s label is a fixed distinct head set.

    The cluster centres, head sets and a few huge-variance nuisance dimensions (like the outlier
    dimensions of LLM hidden states) come from ``problem_seed``; the draws from ``seed``. ``noise``:
    the probability that a query's label also holds any other head (noisy pseudo labels).
    """
    problem = torch.Generator().manual_seed(problem_seed)
    centres = torch.randn(k, d, generator=problem)
    n_heads = shape[0] * shape[1]
    sets = []
    while len(sets) < k:
        candidate = tuple(sorted(torch.randperm(n_heads, generator=problem)[:set_size].tolist()))
        if candidate not in sets:
            sets.append(candidate)
    draws = torch.Generator().manual_seed(seed)
    cluster = torch.randint(0, k, (n,), generator=draws)
    x = centres[cluster] + 0.5 * torch.randn(n, d, generator=draws)
    x[:, :2] = 300.0 * torch.randn(n, 2, generator=draws) + 1000.0  # nuisance outlier dimensions
    labels = torch.zeros(n, n_heads, dtype=torch.bool)
    for i, c in enumerate(cluster.tolist()):
        labels[i, list(sets[c])] = True
    if noise:
        labels |= torch.rand(n, n_heads, generator=draws) < noise
    return x, labels.reshape(n, *shape), cluster, sets


def tiny_wrapped(name: str, **overrides):
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(tiny_llama_config(**overrides), attn_implementation=register(),
                                             dtype=torch.float32)
    return wrap_model(model, name=name)

