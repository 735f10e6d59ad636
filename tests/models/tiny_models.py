"""Tiny randomly initialised HF models built from configs (nothing downloaded).

Every parameter is perturbed with seeded noise so that norm weights are not
ones and biases not zeros (a converter that forgot to load a weight fails)."""

import os

os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import torch  # noqa: E402
import transformers as tf  # noqa: E402

VOCAB = 100


def _perturb(model, seed, scale=0.05):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g) * scale)
    return model.eval()


def bert():
    c = tf.BertConfig(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                      intermediate_size=64, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
                      max_position_embeddings=64)
    torch.manual_seed(0)
    return _perturb(tf.BertModel(c), 1), dict(input_names=["input_ids", "attention_mask"], batch_size=2,
                                               seq_length=7)


def bert_mlm():
    c = tf.BertConfig(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                      intermediate_size=64, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
                      max_position_embeddings=64)
    torch.manual_seed(0)
    return _perturb(tf.BertForMaskedLM(c), 12), dict(input_names=["input_ids", "attention_mask"], batch_size=2,
                                                     seq_length=7)


def gpt2():
    c = tf.GPT2Config(vocab_size=VOCAB, n_embd=32, n_layer=2, n_head=4, n_positions=64, resid_pdrop=0.0,
                      embd_pdrop=0.0, attn_pdrop=0.0, bos_token_id=0, eos_token_id=0)
    torch.manual_seed(0)
    return _perturb(tf.GPT2LMHeadModel(c), 2), dict(input_names=["input_ids", "attention_mask"], batch_size=2,
                                                    seq_length=7)


def t5():
    c = tf.T5Config(vocab_size=VOCAB, d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4, dropout_rate=0.0,
                    decoder_start_token_id=0, relative_attention_num_buckets=8)
    torch.manual_seed(0)
    return _perturb(tf.T5ForConditionalGeneration(c), 3), dict(
        input_names=["input_ids", "attention_mask", "decoder_input_ids"], batch_size=2, seq_length=(7, 5))


def mt5():
    c = tf.MT5Config(vocab_size=VOCAB, d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4, dropout_rate=0.0,
                     decoder_start_token_id=0, relative_attention_num_buckets=8)
    torch.manual_seed(0)
    return _perturb(tf.MT5ForConditionalGeneration(c), 4), dict(
        input_names=["input_ids", "attention_mask", "decoder_input_ids"], batch_size=2, seq_length=(7, 5))


def llama(kv_heads=4):
    c = tf.LlamaConfig(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                       num_key_value_heads=kv_heads, intermediate_size=64, max_position_embeddings=64,
                       bos_token_id=0, eos_token_id=0, pad_token_id=0)
    torch.manual_seed(0)
    return _perturb(tf.LlamaForCausalLM(c), 5), dict(input_names=["input_ids", "attention_mask"], batch_size=2,
                                                     seq_length=7)


def vit():
    c = tf.ViTConfig(image_size=16, patch_size=4, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                     intermediate_size=64, num_channels=3, hidden_dropout_prob=0.0,
                     attention_probs_dropout_prob=0.0)
    torch.manual_seed(0)
    return _perturb(tf.ViTModel(c), 6), dict(input_names=["pixel_values"], batch_size=2)


def llama_gqa():
    """grouped-query attention: repeat_kv goes through a 5-D expand"""
    return llama(kv_heads=2)


def vit_classifier():
    c = tf.ViTConfig(image_size=16, patch_size=4, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                     intermediate_size=64, num_channels=3, hidden_dropout_prob=0.0,
                     attention_probs_dropout_prob=0.0, num_labels=5)
    torch.manual_seed(0)
    return _perturb(tf.ViTForImageClassification(c), 7), dict(input_names=["pixel_values"], batch_size=4)


def albert(head=False):
    """cross-layer parameter sharing: every layer reuses the same weights"""
    c = tf.AlbertConfig(vocab_size=VOCAB, embedding_size=16, hidden_size=32, num_hidden_layers=2,
                        num_attention_heads=4, intermediate_size=64, hidden_dropout_prob=0.0,
                        attention_probs_dropout_prob=0.0)
    torch.manual_seed(0)
    return _perturb((tf.AlbertForMaskedLM if head else tf.AlbertModel)(c), 8), dict(input_names=["input_ids", "attention_mask"], batch_size=2,
                                                seq_length=7)


def albert_mlm():
    return albert(head=True)


def opt():
    """positions come from a cumsum of the mask unless position_ids is an input"""
    c = tf.OPTConfig(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, ffn_dim=64,
                     word_embed_proj_dim=32, dropout=0.0, attention_dropout=0.0)
    torch.manual_seed(0)
    return _perturb(tf.OPTForCausalLM(c), 9), dict(input_names=["input_ids", "attention_mask", "position_ids"],
                                                   batch_size=2, seq_length=7)


def gptj():
    """rotary embedding via a 5-D stack (unsqueeze, cat, view)"""
    c = tf.GPTJConfig(vocab_size=VOCAB, n_embd=32, n_layer=2, n_head=4, rotary_dim=4, n_positions=64,
                      resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, bos_token_id=0, eos_token_id=0)
    torch.manual_seed(0)
    return _perturb(tf.GPTJForCausalLM(c), 10), dict(input_names=["input_ids", "attention_mask"], batch_size=2,
                                                     seq_length=7)


def bloom():
    """ALiBi positions from a cumsum of the mask; fused QKV through a 5-D view"""
    c = tf.BloomConfig(vocab_size=VOCAB, hidden_size=32, n_layer=2, n_head=4, hidden_dropout=0.0,
                       attention_dropout=0.0, bos_token_id=0, eos_token_id=0)
    torch.manual_seed(0)
    return _perturb(tf.BloomForCausalLM(c), 11), dict(input_names=["input_ids", "attention_mask"], batch_size=2,
                                                      seq_length=7)


BUILDERS = {"bert": bert, "gpt2": gpt2, "t5": t5, "mt5": mt5, "llama": llama, "llama_gqa": llama_gqa, "vit": vit,
            "albert": albert, "opt": opt, "gptj": gptj,
            "bloom": bloom}
