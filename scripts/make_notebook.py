#!/usr/bin/env python
"""Write examples/mt5/prepare_data.ipynb (and optionally execute it in place).

    python scripts/make_notebook.py            # write the notebook without outputs
    python scripts/make_notebook.py --execute  # write it, run it with nbclient, keep outputs
"""
from __future__ import annotations

import argparse
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

REPO = Path(__file__).resolve().parent.parent
NOTEBOOK = REPO / "examples" / "mt5" / "prepare_data.ipynb"

CELLS = [
    new_markdown_cell(
        "# mT5 English↔Sinhala: data preparation\n\n"
        "Runs the same preparation as `scripts/prepare_mt5_data.py`, using the library in "
        "`examples/mt5/data.py`: the shipped CLDR English–Sinhala phrases (`data/eng-sin`, "
        "Tatoeba Challenge layout) → `train.tsv`/`eval.tsv` (two rows per pair, one per "
        "direction, as FlexFlow's `DataPreparer`) → a SentencePiece unigram tokenizer with "
        "mT5's special ids → the `.npy` arrays that FlexFlow's data loaders take.\n\n"
        "Output goes to a temporary folder, so running this notebook never touches "
        "`examples/mt5/data/`."),
    new_code_cell(
        "import sys, tempfile, warnings\n"
        "from pathlib import Path\n\n"
        "import matplotlib.pyplot as plt\n"
        "import numpy as np\n"
        "import pandas as pd\n\n"
        "warnings.filterwarnings('ignore', message='IProgress not found')  # tqdm without ipywidgets\n"
        "# find the repository root from wherever the kernel was started\n"
        "REPO = next(p for p in [Path.cwd(), *Path.cwd().parents] if (p / 'examples/mt5/data.py').is_file())\n"
        "sys.path.insert(0, str(REPO))\n"
        "from examples.mt5 import data as mt5data\n\n"
        "OUT = Path(tempfile.mkdtemp(prefix='mt5-data-'))\n"
        "result = mt5data.prepare(data_dir=REPO / 'data/eng-sin', out=OUT, max_length=48, vocab_size=2000)\n"
        "meta = result.meta\n"
        "{k: meta[k] for k in ('vocab_size', 'max_length', 'pad_id', 'eos_id', 'unk_id', 'decoder_start_id')}"),
    new_markdown_cell("## A few pairs\n\nThe TSV keeps pandas' index column, as FlexFlow's `data_to_tsv` does."),
    new_code_cell(
        "train_df, eval_df = mt5data.read_tsv(OUT)\n"
        "print(len(train_df), 'train rows,', len(eval_df), 'eval rows (2 per pair)')\n"
        "train_df.head(8)"),
    new_markdown_cell("## Token lengths\n\nNon-pad tokens per row (including `</s>`), against the 48-token limit."),
    new_code_cell(
        "arrays = mt5data.load_arrays(OUT, 'train')\n"
        "src_len = arrays['source_mask'].sum(axis=1)\n"
        "tgt_len = (arrays['target_ids'] != meta['pad_id']).sum(axis=1)\n"
        "fig, ax = plt.subplots(figsize=(7, 3.5))\n"
        "bins = np.arange(0, meta['max_length'] + 2) - 0.5\n"
        "ax.hist([src_len, tgt_len], bins=bins, label=['source', 'target'])\n"
        "ax.axvline(meta['max_length'], color='k', ls='--', lw=1, label='max_length')\n"
        "ax.set_xlabel('tokens per row'); ax.set_ylabel('rows'); ax.legend()\n"
        "ax.set_title('train split token lengths')\n"
        "plt.show()\n"
        "print('longest source', src_len.max(), 'longest target', tgt_len.max())"),
    new_markdown_cell(
        "## Arrays\n\n`lm_labels` is int32 with a trailing axis of 1 (FlexFlow's sparse-CE label "
        "tensor); every label is a valid class (pad 0 included, no -100), and `y_ids` is "
        "`shift_tokens_right(lm_labels)` with decoder start 0."),
    new_code_cell(
        "rows = []\n"
        "for split in ('train', 'eval'):\n"
        "    for name, a in mt5data.load_arrays(OUT, split).items():\n"
        "        rows.append({'array': f'{split}_{name}', 'shape': a.shape, 'dtype': str(a.dtype),\n"
        "                     'min': int(a.min()), 'max': int(a.max())})\n"
        "pd.DataFrame(rows)"),
    new_code_cell(
        "from transformers import AutoTokenizer\n"
        "tok = AutoTokenizer.from_pretrained(OUT / 'tokenizer')\n"
        "i = 0\n"
        "labels = arrays['lm_labels'][i, :, 0]\n"
        "assert arrays['y_ids'][i, 0] == meta['decoder_start_id'] and (arrays['y_ids'][i, 1:] == labels[:-1]).all()\n"
        "print('source :', tok.decode(arrays['source_ids'][i], skip_special_tokens=True))\n"
        "print('labels :', tok.convert_ids_to_tokens(labels[labels != 0].tolist()))\n"
        "print('y_ids  :', arrays['y_ids'][i, :12].tolist())"),
    new_code_cell("import shutil\nshutil.rmtree(OUT)  # temporary output"),
]


def build() -> nbformat.NotebookNode:
    nb = new_notebook(cells=CELLS)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    return nb


def execute(nb: nbformat.NotebookNode, timeout: int = 120) -> nbformat.NotebookNode:
    from nbclient import NotebookClient

    NotebookClient(nb, timeout=timeout, kernel_name="python3",
                   resources={"metadata": {"path": str(REPO)}}).execute()
    return nb


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--execute", action="store_true", help="run it and keep the outputs")
    parser.add_argument("--out", type=Path, default=NOTEBOOK)
    args = parser.parse_args(argv)
    nb = build()
    if args.execute:
        execute(nb)
    nbformat.validate(nb)
    nbformat.write(nb, args.out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
