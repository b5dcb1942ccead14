"""What the speed benchmarks share: the peak rate an MFU is measured against, and the random-weight models
the GPU benchmarks time (speed does not depend on the weights, so nothing is downloaded).

The machine record every result carries is :func:`xdr.runtime.machine_info`. torch and transformers are
imported inside the builders, so a benchmark that needs neither does not pay for them.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch
    from transformers import MT5ForConditionalGeneration

# Dense bf16 tensor-core peaks from NVIDIA's data sheets (TFLOP/s, without sparsity), matched as substrings
# of torch.cuda.get_device_name() in this order, so "H100 PCIe" is found before "H100" (the SXM part).
PEAK_BF16_TFLOPS: tuple[tuple[str, float], ...] = (
    ("H100 PCIe", 756.0),
    ("H100", 989.0),
    ("H200", 989.0),
    ("A100", 312.0),
)

MBERT_VOCAB = 119_547  # mBERT's vocabulary: the embedding size of the random BERTs
BERT_SIZES: dict[str, dict[str, int]] = {
    "base": dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072),
    "tiny": dict(hidden_size=128, num_hidden_layers=2, num_attention_heads=2, intermediate_size=512),
}
BERT_SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]

MT5_PAD, MT5_EOS, MT5_UNK = 0, 1, 2  # mT5's ids; its decoder starts from PAD
MT5_SIZES: dict[str, dict[str, int]] = {
    # mT5-base as released (MT5Config's own defaults are mT5-small's, and it ties the LM head by default).
    "base": dict(vocab_size=250_112, d_model=768, d_kv=64, d_ff=2048, num_layers=12, num_decoder_layers=12,
                 num_heads=12),
    "tiny": dict(vocab_size=4096, d_model=64, d_kv=16, d_ff=128, num_layers=2, num_decoder_layers=2, num_heads=4),
}


def peak_tflops(gpu: str | None, override: float | None = None) -> float | None:
    """The peak an MFU divides by: ``override`` if given, else the table's entry for the GPU named ``gpu``.

    None (no MFU) for a CPU run (``gpu`` None) or a GPU not in the table: a guessed peak would give a
    figure that looks measured.
    """
    if override is not None:
        return override
    return next((tflops for name, tflops in PEAK_BF16_TFLOPS if gpu and name in gpu), None)


def sync(device: torch.device) -> None:
    """Wait for queued GPU work, so a timing covers the work and not only its launch."""
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize()


def save_random_bert(out: Path, size: str, texts: Sequence[str] | None = None) -> None:
    """Save a random-weight BERT of ``size`` (mBERT's vocabulary size, seed 0) and a tokenizer in ``out``.

    With ``texts`` the tokenizer is a WordPiece trained on them, which gives realistic token counts for
    timing text end to end; without, it is a minimal vocabulary that only has to load, for a benchmark that
    feeds token ids itself.
    """
    import torch
    from transformers import BertConfig, BertModel, BertTokenizerFast

    if texts is None:
        vocab = out / "vocab.txt"
        vocab.write_text("\n".join(BERT_SPECIALS + list("abcdefghijklmnopqrstuvwxyz")) + "\n", encoding="utf-8")
        BertTokenizerFast(vocab_file=str(vocab), do_lower_case=False, model_max_length=512).save_pretrained(out)
    else:
        from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers

        tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
        tok.normalizer = normalizers.BertNormalizer(lowercase=False)
        tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        tok.train_from_iterator(texts, trainers.WordPieceTrainer(vocab_size=30000, special_tokens=BERT_SPECIALS))
        tok.post_processor = processors.TemplateProcessing(
            single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)]
        )
        BertTokenizerFast(tokenizer_object=tok, model_max_length=512, unk_token="[UNK]", pad_token="[PAD]",
                          cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]").save_pretrained(out)
    torch.manual_seed(0)
    config = BertConfig(vocab_size=MBERT_VOCAB, max_position_embeddings=512, **BERT_SIZES[size])
    BertModel(config).save_pretrained(out)


def random_mt5(size: str, device: torch.device, dtype: torch.dtype) -> MT5ForConditionalGeneration:
    """A random-weight mT5 of ``size`` built on ``device`` (seed 0), in eval mode.

    transformers 5 builds every MT5 with its LM head tied to the input embedding (MT5Config overrides
    ``tie_word_embeddings``); released mT5 checkpoints carry their own LM head, so it is untied here to hold
    the same parameters in memory (the FLOPs are the same either way).
    """
    import torch
    from transformers import MT5Config, MT5ForConditionalGeneration

    config = MT5Config(**MT5_SIZES[size], feed_forward_proj="gated-gelu", pad_token_id=MT5_PAD,
                       eos_token_id=MT5_EOS, decoder_start_token_id=MT5_PAD)
    torch.manual_seed(0)
    with torch.device(device):
        model: Any = MT5ForConditionalGeneration(config)
        model.lm_head.weight = torch.nn.Parameter(torch.randn_like(model.lm_head.weight) * config.d_model**-0.5)
    return model.to(dtype).eval()


def read_xquad(data: Path, langs: list[str], unit: str) -> list[str]:
    """Passages from XQuAD-R: each paragraph's sentences (the retrieval pool) or whole paragraphs."""
    texts = []
    for lang in langs:
        path = data / "xquad-r" / f"{lang}.json"
        if not path.exists():
            sys.exit(f"{path} not found; pass --data DIR (the folder holding xquad-r/)")
        for article in json.loads(path.read_text(encoding="utf-8"))["data"]:
            for p in article["paragraphs"]:
                texts.extend(p["sentences"] if unit == "sentences" else [p["context"]])
    return texts
