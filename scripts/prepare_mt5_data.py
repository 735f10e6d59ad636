#!/usr/bin/env python
"""Prepare the mT5 English<->Sinhala example data: TSVs, tokenizer and .npy arrays.

    python scripts/prepare_mt5_data.py                       # shipped data/eng-sin
    python scripts/prepare_mt5_data.py --tar eng-sin.tar     # Tatoeba Challenge archive
    python scripts/prepare_mt5_data.py --model path/to/mt5-small --force

Writes <out>/{train,eval}.tsv, <out>/tokenizer/ and <out>/numpy/*.npy + meta.json.
Re-running with the same inputs does nothing; different inputs need --force.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from examples.mt5 import data as mt5data  # noqa: E402



def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    src = p.add_mutually_exclusive_group()
    src.add_argument("--data-dir", type=Path, help="Tatoeba pair folder (default: data/eng-sin)")
    src.add_argument("--tar", type=Path, help="Tatoeba Challenge eng-sin.tar instead of a folder")
    p.add_argument("--out", type=Path, default=REPO / "examples" / "mt5" / "data",
                   help="output folder (default: examples/mt5/data)")
    p.add_argument("--model", type=Path, default=None,
                   help="local google/mt5-small-like folder whose tokenizer to use "
                        "(default: train a SentencePiece unigram tokenizer on the training text)")
    p.add_argument("--max-length", type=int, default=mt5data.DEFAULT_MAX_LENGTH,
                   help=f"tokens per source and target row (default: {mt5data.DEFAULT_MAX_LENGTH}, "
                        "enough for the shipped phrases; FlexFlow's example uses 48)")
    p.add_argument("--vocab-size", type=int, default=2000,
                   help="vocabulary of a trained tokenizer (default: 2000; ignored with --model)")
    p.add_argument("--shuffle-seed", type=int, default=42, help="training row order seed (default: 42)")
    p.add_argument("--force", action="store_true",
                   help="replace prepared data made differently (only the files this tool writes)")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    data_dir = args.data_dir if args.data_dir or args.tar else REPO / "data" / "eng-sin"
    try:
        result = mt5data.prepare(data_dir=data_dir, tar=args.tar, out=args.out, model_dir=args.model,
                                 max_length=args.max_length, vocab_size=args.vocab_size,
                                 force=args.force, shuffle_seed=args.shuffle_seed)
    except mt5data.PrepareError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for name, shape in result.meta["shapes"].items():
        print(f"  {name:<22}{str(tuple(shape)):>14}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
