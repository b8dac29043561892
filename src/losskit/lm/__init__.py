"""Losses for training language models: the causal-LM head and the sequence-level objectives."""

from .causal import *
from .distill import *
from .logprobs import *
from .policy import *
from .preference import *
