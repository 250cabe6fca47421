"""Tests of `minillm generate` (minillm/commands/generate.py, lesson 03).

The command loads a model WITH its own tokenizer: a run folder or ckpt.pt through
`minillm.checkpoint.load_run` (a stand-in is used below while that loader is not in
the tree), a Hugging Face folder or name through `minillm.interop`.
"""

import dataclasses
from types import SimpleNamespace

import pytest
import torch

from minillm import checkpoint
from minillm.cli import main
from minillm.generation import generate_batch
from minillm.model import GPT, GPTConfig


def _standin_load_run(path, device="cpu"):
    """What the contract's load_run returns, built from today's loaders."""
    from pathlib import Path

    from minillm.tokenizer import Tokenizer

    path = Path(path)
    folder = path if path.is_dir() else path.parent
    tok = Tokenizer.load(folder / "tokenizer.json") if (folder / "tokenizer.json").exists() else None
    model = checkpoint.load_model(path, device)
    return SimpleNamespace(model=model, tokenizer=tok, config=model.config, meta={})


@pytest.fixture(autouse=True)
def load_run(monkeypatch):
    if not hasattr(checkpoint, "load_run"):
        monkeypatch.setattr(checkpoint, "load_run", _standin_load_run, raising=False)


@pytest.fixture
def run_dir(tmp_path):
    from minillm.tokenizer import Tokenizer

    tok = Tokenizer.train("the cat sat on the mat. the dog sat on the log. " * 20, vocab_size=280)
    torch.manual_seed(8)
    model = GPT(GPTConfig(vocab_size=tok.vocab_size, block_size=64, n_layer=1, n_head=2, n_embd=16)).eval()
    torch.save({"model": model.state_dict(), "config": dataclasses.asdict(model.config)}, tmp_path / "ckpt.pt")
    tok.save(tmp_path / "tokenizer.json")
    return tmp_path, model, tok


def expected_text(model, tok, prompt, n=12):
    ids = tok.encode(prompt)
    return tok.decode(ids + generate_batch(model, [ids], n, temperature=0, stop_ids=[tok.eot_id])[0])


@pytest.mark.parametrize("which", ["folder", "file"])
def test_generate_from_a_run_folder_or_its_checkpoint(run_dir, capsys, which):
    folder, model, tok = run_dir
    target = folder if which == "folder" else folder / "ckpt.pt"
    argv = ["generate", "--checkpoint", str(target), "--prompt", "the cat", "--max-new-tokens", "12",
            "--temperature", "0", "--device", "cpu"]
    assert main(argv) == 0
    text = capsys.readouterr().out.rstrip("\n")
    assert text == expected_text(model, tok, "the cat") and text.startswith("the cat")


def test_special_token_strings_in_the_prompt_are_plain_text_unless_asked(run_dir, capsys):
    folder, model, tok = run_dir
    base = ["generate", "--checkpoint", str(folder), "--max-new-tokens", "0", "--device", "cpu"]
    assert main(base + ["--prompt", "<|endoftext|>"]) == 0  # no error, no keyword suggestion
    assert capsys.readouterr().out.rstrip("\n") == "<|endoftext|>"
    assert main(base + ["--prompt", "the<|endoftext|>", "--special"]) == 0
    assert capsys.readouterr().out.rstrip("\n") == tok.decode(tok.encode("the<|endoftext|>", allowed_special="all"))


def test_generate_missing_checkpoint_is_one_line_error(tmp_path, capsys):
    assert main(["generate", "--checkpoint", str(tmp_path / "nope.pt")]) == 2
    assert "not found" in capsys.readouterr().err


def test_generate_on_a_folder_that_is_neither_kind_is_one_line_error(tmp_path, capsys):
    assert main(["generate", "--checkpoint", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "neither a minillm run folder" in err and err.count("\n") == 1


def _hf_llama_folder(path):
    transformers = pytest.importorskip("transformers")
    pytest.importorskip("tokenizers")
    from tokenizers import Tokenizer as HFTok, models, pre_tokenizers

    words = ["<unk>", "</s>", "the", "cat", "sat", "mat", "on", "a"]
    raw = HFTok(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    raw.pre_tokenizer = pre_tokenizers.Whitespace()
    hf_tok = transformers.PreTrainedTokenizerFast(tokenizer_object=raw, unk_token="<unk>", eos_token="</s>")
    torch.manual_seed(0)
    cfg = transformers.LlamaConfig(vocab_size=len(words), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                   num_attention_heads=2, max_position_embeddings=32, bos_token_id=1,
                                   eos_token_id=1, pad_token_id=0)
    transformers.LlamaForCausalLM(cfg).save_pretrained(path)
    hf_tok.save_pretrained(path)
    return hf_tok


def test_generate_on_a_llama_folder_uses_its_own_tokenizer(tmp_path, capsys):
    hf_tok = _hf_llama_folder(tmp_path)
    argv = ["generate", "--checkpoint", str(tmp_path), "--prompt", "the cat sat", "--max-new-tokens", "5",
            "--temperature", "0", "--device", "cpu"]
    assert main(argv) == 0
    out = capsys.readouterr().out.strip()
    from minillm.interop import from_pretrained

    ids = hf_tok("the cat sat", add_special_tokens=False)["input_ids"]
    assert ids == [2, 3, 4]  # the folder's word-level vocabulary, not GPT-2's tiktoken ids
    new = generate_batch(from_pretrained(str(tmp_path)), [ids], 5, temperature=0, stop_ids=[1])[0]
    assert out == hf_tok.decode(ids + new)
