"""Conversion time and peak memory of an mt5-small-sized model against torch.export alone.

Builds a randomly initialised MT5ForConditionalGeneration with google/mt5-small's
configuration (300M parameters, untied LM head as in the checkpoint, vocabulary 250112), then in separate processes
(so that peak memory is each one's own):
  export   torch.export.export(strict=False) of the model, nothing else;
  convert  PyTorchModel(...) + torch_to_ff into an embedded-runtime FFModel + compile
           (which loads every PyTorch weight into the FlexFlow layers).
Prints wall time, peak resident memory and the memory added over the built model.

    python scripts/bench_convert.py [--batch-size 8] [--seq-length 48]
"""

import argparse
import json
import resource
import subprocess
import sys
import time

MT5_SMALL = dict(vocab_size=250112, d_model=512, d_kv=64, d_ff=1024, num_layers=8,
                 num_decoder_layers=8, num_heads=6, relative_attention_num_buckets=32,
                 relative_attention_max_distance=128, dropout_rate=0.0,
                 feed_forward_proj="gated-gelu", tie_word_embeddings=False,
                 decoder_start_token_id=0)
INPUT_NAMES = ["input_ids", "attention_mask", "decoder_input_ids"]


def peak_rss_mb():
    """Peak resident memory since the last reset (VmHWM), in MiB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def rss_mb():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def measure(mode, batch, seq):
    import torch
    from transformers import MT5Config, MT5ForConditionalGeneration
    torch.manual_seed(0)
    model = MT5ForConditionalGeneration(MT5Config(**MT5_SMALL)).eval()
    # Transformers 5 forces MT5's LM head to share the input embedding; google/mt5-small's
    # checkpoint has a separate LM head (300M parameters): give it its own weight.
    model.lm_head.weight = torch.nn.Parameter(model.shared.weight.detach().clone())
    model.config.tie_word_embeddings = False
    model.config.use_cache = False          # no KV-cache objects in the outputs (both modes)
    params = sum(p.numel() for p in model.parameters())
    base = rss_mb()
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")                        # reset the peak (VmHWM) to the current RSS
    start = time.perf_counter()
    if mode == "export":
        from flexflow_torch.capture import make_example_inputs
        inputs = make_example_inputs(model, INPUT_NAMES, batch, (seq, seq - 1))
        with torch.no_grad():
            torch.export.export(model, (), dict(inputs, use_cache=False), strict=False)
    else:
        from flexflow_torch import CrossEntropyHead, PyTorchModel
        from flexflow_torch.runtime import SGDOptimizer
        from flexflow_torch.verify import embedded_model
        ffmodel = embedded_model(batch)
        outputs = PyTorchModel(model, is_hf_model=True, input_names=INPUT_NAMES,
                               batch_size=batch, seq_length=(seq, seq - 1)).torch_to_ff(ffmodel)
        head = CrossEntropyHead(ffmodel, outputs[0])
        ffmodel.compile(optimizer=SGDOptimizer(ffmodel, 0.01), loss_type=head.loss_type, metrics=head.metrics)
    seconds = time.perf_counter() - start
    return {"mode": mode, "params": params, "seconds": seconds, "peak_mb": peak_rss_mb(),
            "model_mb": base, "added_mb": peak_rss_mb() - base}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--seq-length", type=int, default=48)
    parser.add_argument("--child", choices=("export", "convert"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.child, args.batch_size, args.seq_length)))
        return
    rows = []
    for mode in ("export", "convert"):
        out = subprocess.run([sys.executable, __file__, "--child", mode, "--batch-size",
                              str(args.batch_size), "--seq-length", str(args.seq_length)],
                             capture_output=True, text=True, check=True)
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    print(f"mt5-small-sized MT5 ({rows[0]['params'] / 1e6:.0f}M parameters, random init), "
          f"batch {args.batch_size}, seq {args.seq_length}/{args.seq_length - 1}")
    print(f"{'step':<44}{'seconds':>9}{'peak RSS MB':>13}{'added MB':>10}")
    names = {"export": "torch.export alone",
             "convert": "flexflow-torch convert + compile (weights in)"}
    for r in rows:
        print(f"{names[r['mode']]:<44}{r['seconds']:>9.1f}{r['peak_mb']:>13.0f}{r['added_mb']:>10.0f}")
    print(f"ratio convert/export: time {rows[1]['seconds'] / rows[0]['seconds']:.2f}x, "
          f"added memory {rows[1]['added_mb'] / max(rows[0]['added_mb'], 1):.2f}x")


if __name__ == "__main__":
    main()
