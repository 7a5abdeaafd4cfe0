"""Tiny, randomly initialised Hugging Face models built offline, for testing the hub-backed backends.

Each ``build_*`` function creates a model from a small config, a real tokenizer built from a
hand-written vocabulary (no download), the model family's PIL image processor with small sizes,
and saves all of it with ``save_pretrained`` into ``dest``: the folder then loads back through the
same ``from_pretrained`` calls that real checkpoints go through.

Models are tiny (hidden sizes 16-32, one or two layers, 32-64 px inputs) so they run in well
under a second on a CPU. Their outputs are meaningless, but their shapes, pre- and
post-processing are the real ones.
"""

from __future__ import annotations

import hashlib
import os
import string
from pathlib import Path

# Words that the tiny tokenizers know as whole tokens (everything else falls back to pieces).
WORDS = ["a", "photo", "of", "the", "cat", "dog", "person", "rocket", "face", "car", "tree", "sign", "text"]

BUILDERS: dict[str, str] = {
    "owlv2": "build_owlv2",
    "owlvit": "build_owlvit",
    "grounding-dino": "build_grounding_dino",
    "siglip": "build_siglip",
    "clip": "build_clip",
}


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP byte-level alphabet: each byte maps to one printable unicode character."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    chars = printable[:]
    extra = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            chars.append(256 + extra)
            extra += 1
    return dict(zip(printable, (chr(c) for c in chars)))


def clip_tokenizer(model_max_length: int = 16):
    """A real ``CLIPTokenizer`` (byte-level BPE) over a hand-written vocabulary.

    The vocabulary holds every byte-level character with and without the ``</w>`` end-of-word
    suffix (so any text encodes without unknown tokens), whole-word tokens for :data:`WORDS`, then
    ``<|startoftext|>`` and ``<|endoftext|>`` last. Merges build the whole words letter by letter.
    """
    from transformers import CLIPTokenizer

    alphabet = list(_bytes_to_unicode().values())
    vocab: dict[str, int] = {}
    for char in alphabet:
        vocab[char] = len(vocab)
    for char in alphabet:
        vocab[char + "</w>"] = len(vocab)
    merges: list[tuple[str, str]] = []
    for word in WORDS:
        pieces = list(word[:-1]) + [word[-1] + "</w>"]
        while len(pieces) > 1:
            merged = pieces[0] + pieces[1]
            merge = (pieces[0], pieces[1])
            if merge not in merges:
                merges.append(merge)
            if merged not in vocab:
                vocab[merged] = len(vocab)
            pieces = [merged] + pieces[2:]
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    return CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=model_max_length)


def bert_tokenizer(model_max_length: int = 32):
    """A real WordPiece ``BertTokenizer``: special tokens, punctuation, :data:`WORDS`, letters and ``##`` letters."""
    from transformers import BertTokenizer

    tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", ",", "-", "'"]
    tokens += list(string.digits) + list(string.ascii_lowercase)
    tokens += ["##" + c for c in string.ascii_lowercase + string.digits]
    tokens += [w for w in WORDS if w not in tokens]
    vocab = {token: i for i, token in enumerate(tokens)}
    return BertTokenizer(vocab=vocab, model_max_length=model_max_length)


def gemma_tokenizer(model_max_length: int = 16):
    """A ``GemmaTokenizer`` (byte-fallback BPE, tokenizers-backed) like SigLIP 2's fixed-resolution checkpoints.

    SigLIP 1's own ``SiglipTokenizer`` needs the ``sentencepiece`` package and a trained ``spiece.model``;
    SigLIP 2 checkpoints (``model_type: siglip``) ship a Gemma tokenizer instead, which needs neither.
    """
    from transformers import GemmaTokenizer

    vocab: dict[str, int] = {"<pad>": 0, "<eos>": 1, "<bos>": 2, "<unk>": 3, "<mask>": 4}
    for byte in range(256):
        vocab[f"<0x{byte:02X}>"] = len(vocab)
    for char in "▁" + string.ascii_lowercase:
        vocab.setdefault(char, len(vocab))
    merges: list[tuple[str, str]] = []
    for word in WORDS:
        pieces = ["▁"] + list(word)
        while len(pieces) > 1:
            merged = pieces[0] + pieces[1]
            if (pieces[0], pieces[1]) not in merges:
                merges.append((pieces[0], pieces[1]))
            vocab.setdefault(merged, len(vocab))
            pieces = [merged] + pieces[2:]
    return GemmaTokenizer(vocab=vocab, merges=merges, model_max_length=model_max_length)


def _text_tower(tokenizer, **extra) -> dict:
    """A 1-layer, 32-wide text transformer config over ``tokenizer``'s vocabulary and special tokens."""
    return dict(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        max_position_embeddings=16,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        **extra,
    )


def _vision_tower(image_size: int, patch_size: int) -> dict:
    """A 1-layer, 32-wide ViT config."""
    return dict(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        image_size=image_size,
        patch_size=patch_size,
    )


def _seed() -> None:
    import torch

    torch.manual_seed(0)


def build_owlv2(dest: Path) -> Path:
    """A tiny OWLv2 detector (64 px input, 4x4 patch grid) + ``Owlv2Processor``, saved into ``dest``."""
    from transformers import Owlv2Config, Owlv2ForObjectDetection, Owlv2ImageProcessorPil, Owlv2Processor

    tokenizer = clip_tokenizer(model_max_length=16)
    config = Owlv2Config(
        text_config=_text_tower(tokenizer),
        vision_config=_vision_tower(image_size=64, patch_size=16),
        projection_dim=32,
    )
    _seed()
    model = Owlv2ForObjectDetection(config).eval()
    _calm_heads(model, ("class_head.", "box_head.", "objectness_head."))
    image_processor = Owlv2ImageProcessorPil(size={"height": 64, "width": 64})
    return _save(dest, model, Owlv2Processor(image_processor=image_processor, tokenizer=tokenizer))


def build_owlvit(dest: Path) -> Path:
    """A tiny OWL-ViT detector (64 px input) + ``OwlViTProcessor``, saved into ``dest``."""
    from transformers import OwlViTConfig, OwlViTForObjectDetection, OwlViTImageProcessorPil, OwlViTProcessor

    tokenizer = clip_tokenizer(model_max_length=16)
    config = OwlViTConfig(
        text_config=_text_tower(tokenizer),
        vision_config=_vision_tower(image_size=64, patch_size=16),
        projection_dim=32,
    )
    _seed()
    model = OwlViTForObjectDetection(config).eval()
    _calm_heads(model, ("class_head.", "box_head."))
    image_processor = OwlViTImageProcessorPil(size={"height": 64, "width": 64}, crop_size={"height": 64, "width": 64})
    return _save(dest, model, OwlViTProcessor(image_processor=image_processor, tokenizer=tokenizer))


def build_grounding_dino(dest: Path) -> Path:
    """A tiny Grounding DINO + ``GroundingDinoProcessor``, saved into ``dest``.

    Swin backbone (8 wide, one block per stage), 1-layer BERT text encoder, 1 encoder and 2 decoder
    layers (one decoder layer breaks the tied box-head weights), 20 queries, 96-128 px inputs. The backbone is built by transformers itself from ``backbone_config`` (no timm, no pretrained
    backbone weights to fetch); the text config is a 1-layer BERT over :func:`bert_tokenizer`'s vocabulary.
    """
    from transformers import (
        BertConfig,
        GroundingDinoConfig,
        GroundingDinoForObjectDetection,
        GroundingDinoImageProcessorPil,
        GroundingDinoProcessor,
        SwinConfig,
    )

    tokenizer = bert_tokenizer(model_max_length=32)
    backbone = SwinConfig(
        image_size=96,
        patch_size=4,
        embed_dim=8,
        depths=[1, 1, 1, 1],
        num_heads=[1, 1, 1, 1],
        window_size=4,
        drop_path_rate=0.0,
        out_features=["stage2", "stage3", "stage4"],
    )
    text = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
        pad_token_id=tokenizer.pad_token_id,
    )
    config = GroundingDinoConfig(
        backbone_config=backbone,
        text_config=text,
        d_model=32,
        num_queries=20,
        encoder_layers=1,
        decoder_layers=2,
        encoder_ffn_dim=32,
        decoder_ffn_dim=32,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_n_points=2,
        decoder_n_points=2,
        num_feature_levels=4,
        max_text_len=32,
        fusion_droppath=0.0,
        disable_custom_kernels=True,
    )
    _seed()
    model = GroundingDinoForObjectDetection(config).eval()
    image_processor = GroundingDinoImageProcessorPil(size={"shortest_edge": 96, "longest_edge": 128})
    return _save(dest, model, GroundingDinoProcessor(image_processor=image_processor, tokenizer=tokenizer))


def build_siglip(dest: Path) -> Path:
    """A tiny SigLIP dual encoder (32 px input) + ``SiglipProcessor`` with a Gemma tokenizer, saved into ``dest``."""
    from transformers import SiglipConfig, SiglipImageProcessorPil, SiglipModel, SiglipProcessor

    tokenizer = gemma_tokenizer(model_max_length=16)
    config = SiglipConfig(
        text_config=_text_tower(tokenizer, projection_size=32),
        vision_config=_vision_tower(image_size=32, patch_size=8),
    )
    _seed()
    model = SiglipModel(config).eval()
    image_processor = SiglipImageProcessorPil(size={"height": 32, "width": 32})
    return _save(dest, model, SiglipProcessor(image_processor=image_processor, tokenizer=tokenizer))


def build_clip(dest: Path) -> Path:
    """A tiny CLIP dual encoder (32 px input) + ``CLIPProcessor``, saved into ``dest``."""
    from transformers import CLIPConfig, CLIPImageProcessorPil, CLIPModel, CLIPProcessor

    tokenizer = clip_tokenizer(model_max_length=16)
    config = CLIPConfig(
        text_config=_text_tower(tokenizer),
        vision_config=_vision_tower(image_size=32, patch_size=8),
        projection_dim=32,
    )
    _seed()
    model = CLIPModel(config).eval()
    image_processor = CLIPImageProcessorPil(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    return _save(dest, model, CLIPProcessor(image_processor=image_processor, tokenizer=tokenizer))


def _calm_heads(model, prefixes: tuple[str, ...], factor: float = 0.1) -> None:
    """Scale down the randomly initialised prediction heads so a tiny model gives varied boxes and scores.

    Fresh OWL heads are N(0, 1) per weight: every box comes out degenerate (sigmoid saturated at 0 or 1)
    and every score at 1.0, which would make ordering and clipping tests vacuous.
    """
    import torch

    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.startswith(prefixes):
                param.mul_(factor)


def _save(dest: Path, model, processor) -> Path:
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(dest)
    processor.save_pretrained(dest)
    return dest


def build(backend: str, dest: Path) -> Path:
    """Build the tiny model for ``backend`` (one of :data:`BUILDERS`) into ``dest`` and return ``dest``."""
    if backend not in BUILDERS:
        raise ValueError(f"no tiny builder for backend {backend!r}; known: {sorted(BUILDERS)}")
    return globals()[BUILDERS[backend]](Path(dest))


def fake_hub_cache(hub: Path, repo_id: str, folder: Path, revision: str = "0123456789abcdef0123456789abcdef01234567") -> Path:
    """Lay ``folder``'s files out under ``hub`` as the HF cache does; return the snapshot folder.

    Layout: ``models--org--name/blobs/<sha256>``, ``snapshots/<revision>/<file>`` symlinks to the
    blobs, and ``refs/main`` holding the revision: what ``from_pretrained(repo_id,
    local_files_only=True)`` and ``snapshot_download(repo_id, local_files_only=True)`` resolve.
    """
    repo = Path(hub) / ("models--" + repo_id.replace("/", "--"))
    snapshot = repo / "snapshots" / revision
    (repo / "blobs").mkdir(parents=True)
    snapshot.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(revision)
    for path in sorted(Path(folder).iterdir()):
        blob = repo / "blobs" / hashlib.sha256(path.read_bytes()).hexdigest()
        blob.write_bytes(path.read_bytes())
        (snapshot / path.name).symlink_to(os.path.relpath(blob, snapshot))
    return snapshot
