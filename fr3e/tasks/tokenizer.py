"""A character-level tokenizer for the embedded arithmetic world (`tiny` profile).

One token per character of printable ASCII plus `\\n`; anything else maps to `<unk>` (never an error).
Built with the `tokenizers` library (WordLevel over single characters, every character split off by a
regex pre-tokenizer, a `Fuse` decoder so decoding does not insert spaces) and wrapped as a
`transformers.PreTrainedTokenizerFast`, so it saves and loads through the ordinary transformers API.

Conventions: `tokenizer(text)` prepends `<s>` (BOS) and never appends EOS; a training target is
`tokenizer(prompt).input_ids + tokenizer(solution, add_special_tokens=False).input_ids + [eos_token_id]`.

Trap avoided (measured): `AutoTokenizer` on a directory whose config says `qwen2` ignores a custom
`tokenizer.json` and drops `\\n`. The package always loads with `load_tokenizer` (the fast-tokenizer class
directly), and the tiny model is a Qwen3 config.
"""

from __future__ import annotations

from pathlib import Path

from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors
from transformers import PreTrainedTokenizerFast

PAD, BOS, EOS, UNK = "<pad>", "<s>", "</s>", "<unk>"
SPECIAL_TOKENS = (PAD, BOS, EOS, UNK)  # ids 0, 1, 2, 3
CHARACTERS = ("\n", *(chr(i) for i in range(32, 127)))  # newline + printable ASCII (space .. ~)


def build_tokenizer() -> PreTrainedTokenizerFast:
    """The character-level tokenizer: ids 0-3 are <pad> <s> </s> <unk>, then one id per character."""
    vocab = {token: i for i, token in enumerate((*SPECIAL_TOKENS, *CHARACTERS))}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")  # every char alone
    tok.decoder = decoders.Fuse()
    tok.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A $B", special_tokens=[(BOS, vocab[BOS])]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        unk_token=UNK,
        padding_side="left",
        model_max_length=1024,
        clean_up_tokenization_spaces=False,
    )


def load_tokenizer(path: str | Path) -> PreTrainedTokenizerFast:
    """Load a tokenizer saved by `tokenizer.save_pretrained(path)` (the loader every part of fr3e uses)."""
    path = Path(path)
    if not (path / "tokenizer.json").exists():
        raise FileNotFoundError(
            f"no tokenizer.json in {path}; build one with fr3e.tasks.tokenizer.build_tokenizer() and "
            f"save it with .save_pretrained({str(path)!r}), or run fr3e.tasks.warm_start()"
        )
    return PreTrainedTokenizerFast.from_pretrained(str(path))


def is_tiny_tokenizer(path: str | Path) -> bool:
    """True when `path` holds the character-level tokenizer of `build_tokenizer` (a WordLevel model over
    exactly its vocabulary), so loaders pick `load_tokenizer` for it and `AutoTokenizer` for anything else."""
    import json

    file = Path(path) / "tokenizer.json"
    if not file.exists():
        return False
    model = json.loads(file.read_text()).get("model", {})
    expected = {token: i for i, token in enumerate((*SPECIAL_TOKENS, *CHARACTERS))}
    return model.get("type") == "WordLevel" and model.get("vocab") == expected
