"""Models: the built-in reference architectures, evaluation and training, model specs, trained and cached
reference models, and the pretrained all-MiniLM-L6-v2 encoder.

The main input of every analysis is the user's own model: :func:`load` resolves every spec form (a module,
a built-in name, a Hugging Face folder, a checkpoint or TorchScript file, an import path with weights; see
:mod:`.load`).  Hugging Face models run through :class:`~.text.TokenModel`, which gives them the one
``model(x) -> tensor`` interface the analyses use.
"""
from .cost import HVP_PASSES, examples_within, pass_seconds
from .architectures import ARCHITECTURES, GAPCNN, MLP, BasicBlock, SmallCNN, SmallResNet, build
from .load import BUILTIN_MODELS, SPEC_FORMS, load, load_state
from .reference import REFERENCE_TRAINING, cache_dir, load_saved, minilm, minilm_path, reference_model, save_model
from .text import LanguageModelLoss, TokenModel, as_token_model, default_loss, is_hf_model, split_tokens
from .train import TrainResult, evaluate, train

__all__ = [
    "ARCHITECTURES", "MLP", "SmallCNN", "GAPCNN", "BasicBlock", "SmallResNet", "build",
    "load", "load_state", "BUILTIN_MODELS", "SPEC_FORMS",
    "REFERENCE_TRAINING", "cache_dir", "load_saved", "minilm", "minilm_path", "reference_model", "save_model",
    "TokenModel", "LanguageModelLoss", "as_token_model", "default_loss", "is_hf_model", "split_tokens",
    "TrainResult", "evaluate", "train", "pass_seconds", "examples_within", "HVP_PASSES",
]
