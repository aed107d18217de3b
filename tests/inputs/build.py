"""Real inputs made on the fly for the tests: Hugging Face folders, token and image data, checkpoints, graphs."""
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from tests.inputs.nets import ResidualCNN


def tokens(n=24, length=10, vocab=50, seed=0, pad_every=3):
    rng = np.random.default_rng(seed)
    ids = rng.integers(1, vocab, (n, length))
    mask = np.ones_like(ids)
    if pad_every:
        mask[::pad_every, length // 2:] = 0
    ids[mask == 0] = 0
    return ids, mask


def hf_folders(root: Path) -> Path:
    """``root/bert`` (a BERT-style classifier), ``root/gpt2`` (a GPT-2-style language model), ``val.npz``,
    ``lm.npz``: random weights, saved with ``save_pretrained``."""
    import transformers

    torch.manual_seed(0)
    bert = transformers.BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                                   intermediate_size=32, num_labels=3, max_position_embeddings=32)
    transformers.BertForSequenceClassification(bert).save_pretrained(root / "bert")
    gpt = transformers.GPT2Config(vocab_size=50, n_embd=16, n_layer=2, n_head=2, n_positions=32, bos_token_id=1,
                                  eos_token_id=2, pad_token_id=0)
    transformers.GPT2LMHeadModel(gpt).save_pretrained(root / "gpt2")
    ids, mask = tokens()
    np.savez(root / "val.npz", input_ids=ids, attention_mask=mask, labels=np.arange(len(ids)) % 3)
    full, _ = tokens(pad_every=0, seed=1)
    np.savez(root / "lm.npz", input_ids=full)
    return root


def cnn_files(root: Path):
    """A :class:`ResidualCNN` with non-default BatchNorm statistics and its files: weights (.safetensors, .pt),
    the whole pickled module, a TorchScript archive, a second model's weights and a narrower model's."""
    from safetensors.torch import save_file

    torch.manual_seed(0)
    net = ResidualCNN()
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(root / "w.safetensors"))
    torch.save(net.state_dict(), root / "w.pt")
    torch.save(net, root / "whole.pt")
    torch.jit.script(net).save(str(root / "scripted.pt"))
    torch.save(ResidualCNN(width=4).state_dict(), root / "narrow.pt")
    torch.manual_seed(1)
    torch.save(ResidualCNN().state_dict(), root / "b.pt")
    return net


def image_folder(root: Path, classes=("cat", "dog", "eel", "fox"), per_class=5) -> Path:
    from PIL import Image

    rng = np.random.default_rng(0)
    for c, name in enumerate(classes):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            pixels = np.clip(rng.normal(60 * c, 20, (16, 16, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(root / name / f"{i}.png")
    return root


def string_id_edges(path: Path):
    """The karate club with string node ids, as a tab-separated edge list with a header."""
    import networkx as nx

    karate = nx.karate_club_graph()
    names = {i: f"member-{i:02d}" for i in karate.nodes()}
    lines = ["source\ttarget"] + [f"{names[u]}\t{names[v]}" for u, v in karate.edges()]
    path.write_text("\n".join(lines) + "\n")
    return karate, names
