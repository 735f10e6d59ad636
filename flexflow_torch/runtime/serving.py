"""FlexFlow's serving (inference-only) API: present with the real signatures so
scripts fail with a clear message rather than an AttributeError."""

from ..errors import UnsupportedByFlexFlowError
from .enums import DataType
from .serving_types import RotaryEmbeddingMeta


def _serving(name):
    raise UnsupportedByFlexFlowError(
        f"{name} belongs to FlexFlow's serving API (InferenceManager/RequestManager); "
        "its training forward asserts and the embedded runtime does not implement serving")


class ServingOps:
    def inc_multihead_self_attention(self, input, embed_dim, num_heads, kdim=0, vdim=0,
                                     dropout=0.0, add_zero_attn=False, data_type=DataType.DT_NONE,
                                     kernel_initializer=None, rotary_embedding_meta=RotaryEmbeddingMeta(),
                                     scaling_query=False, scaling_factor=1.0,
                                     qk_prod_scaling=True, position_bias=False, name=None):
        _serving("inc_multihead_self_attention")

    def spec_inc_multihead_self_attention(self, input, embed_dim, num_heads, kdim=0, vdim=0,
                                          dropout=0.0, add_zero_attn=False,
                                          data_type=DataType.DT_NONE, kernel_initializer=None,
                                          rotary_embedding_meta=RotaryEmbeddingMeta(), scaling_query=False,
                                          scaling_factor=1.0, qk_prod_scaling=True,
                                          position_bias=False, name=None):
        _serving("spec_inc_multihead_self_attention")

    def inc_multihead_self_attention_verify(self, input, embed_dim, num_heads, kdim=0, vdim=0,
                                            dropout=0.0, add_zero_attn=False,
                                            data_type=DataType.DT_NONE, kernel_initializer=None,
                                            rotary_embedding_meta=RotaryEmbeddingMeta(), scaling_query=False,
                                            scaling_factor=1.0, qk_prod_scaling=True,
                                            position_bias=False, name=None):
        _serving("inc_multihead_self_attention_verify")

    def inc_multiquery_self_attention(self, input, embed_dim, num_q_heads, num_kv_heads, kdim=0,
                                      vdim=0, dropout=0.0, add_zero_attn=False,
                                      data_type=DataType.DT_NONE, kernel_initializer=None,
                                      rotary_embedding_meta=RotaryEmbeddingMeta(), scaling_query=False,
                                      scaling_factor=1.0, qk_prod_scaling=True,
                                      position_bias=False, name=None):
        _serving("inc_multiquery_self_attention")

    def spec_inc_multiquery_self_attention(self, input, embed_dim, num_q_heads, num_kv_heads,
                                           kdim=0, vdim=0, dropout=0.0, add_zero_attn=False,
                                           data_type=DataType.DT_NONE, kernel_initializer=None,
                                           rotary_embedding_meta=RotaryEmbeddingMeta(), scaling_query=False,
                                           scaling_factor=1.0, qk_prod_scaling=True,
                                           position_bias=False, name=None):
        _serving("spec_inc_multiquery_self_attention")

    def inc_multiquery_self_attention_verify(self, input, embed_dim, num_q_heads, num_kv_heads,
                                             kdim=0, vdim=0, dropout=0.0, add_zero_attn=False,
                                             data_type=DataType.DT_NONE, kernel_initializer=None,
                                             rotary_embedding_meta=RotaryEmbeddingMeta(), scaling_query=False,
                                             scaling_factor=1.0, qk_prod_scaling=True,
                                             position_bias=False, name=None):
        _serving("inc_multiquery_self_attention_verify")

    def arg_top_k(self, input, k, sorted, speculative_decoding, name=None):
        _serving("arg_top_k")

    def beam_top_k(self, input, max_beam_size, sorted, name=None):
        _serving("beam_top_k")

    def sampling(self, input, top_p, name=None):
        _serving("sampling")

    def argmax(self, input, beam_search, name=None):
        _serving("argmax")

    def add_lora_layer(self, peft_config):
        _serving("add_lora_layer")

    def set_transformer_layer_id(self, id):
        _serving("set_transformer_layer_id")

    def generate_inf_only(self, prompt_list, max_length, max_new_tokens):
        _serving("generate_inf_only")

    def generate(self, requests_list):
        _serving("generate")

    def set_position_offset(self, offset):
        _serving("set_position_offset")
