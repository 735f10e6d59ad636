"""FFModel's operator methods, with FlexFlow's exact names, parameters and defaults.

Each method only maps its Python arguments onto the operator's rules in
`flexflow_torch.semantics` (shapes, dtypes, partitions, forward, backward) and records
the layer. Python-level quirks of FlexFlow's C API live here: `relu`, `elu`, `rsqrt`
and `pow` pass their `name` into the C++ `inplace` flag (src/c/flexflow_c.cc:403,414,1095),
and `relu`/`gelu`/`elu` ignore their own `inplace` argument."""

from ..errors import UnsupportedByFlexFlowError
from .enums import ActiMode, DataType, PoolType, RegularizerMode
from .initializers import GlorotUniformInitializer, ZeroInitializer


def _inference_only(op, instead):
    raise UnsupportedByFlexFlowError(
        f"{op} is inference-only in FlexFlow (its training forward asserts); for training use {instead}")


class OperatorMethods:
    # -- element-wise unary ---------------------------------------------------------
    def exp(self, x, name=None):
        return self._op("exp", name, x=x)

    def sin(self, x, name=None):
        return self._op("sin", name, x=x)

    def cos(self, x, name=None):
        return self._op("cos", name, x=x)

    def rsqrt(self, input, name=None):
        return self._op("rsqrt", name, input=input, inplace=name is not None)

    def pow(self, input, exponent, name=None):
        return self._op("pow", name, input=input, exponent=float(exponent), inplace=name is not None)

    def gelu(self, input, inplace=True, name=None):
        """Exact (erf) GELU; `inplace` is ignored, as in FlexFlow."""
        return self._op("gelu", name, input=input)

    def relu(self, input, inplace=True, name=None):
        return self._op("relu", name, input=input, inplace=name is not None)

    def identity(self, input, name=None):
        return self._op("identity", name, input=input)

    def sigmoid(self, input, name=None):
        return self._op("sigmoid", name, input=input)

    def tanh(self, input, name=None):
        return self._op("tanh", name, input=input)

    def elu(self, input, inplace=True, name=None):
        """cuDNN takes FlexFlow's ELU coefficient 0.0 as alpha: ELU is ReLU."""
        return self._op("elu", name, input=input, inplace=name is not None)

    def scalar_multiply(self, input, scalar, inplace=True, name=None):
        return self._op("scalar_multiply", name, input=input, scalar=float(scalar), inplace=bool(inplace))

    def scalar_add(self, input, scalar, inplace=True, name=None):
        return self._op("scalar_add", name, input=input, scalar=float(scalar), inplace=bool(inplace))

    def scalar_sub(self, input, scalar, inplace=True, name=None):
        return self._op("scalar_sub", name, input=input, scalar=float(scalar), inplace=bool(inplace))

    def scalar_true_divide(self, input, scalar, inplace=True, name=None):
        return self._op("scalar_true_divide", name, input=input, scalar=float(scalar), inplace=bool(inplace))

    def dropout(self, input, rate, seed, name=None):
        """cuDNN dropout, active in every forward (eval() included); seed 0 = random."""
        return self._op("dropout", name, input=input, rate=float(rate), seed=int(seed))

    # -- element-wise binary --------------------------------------------------------
    def add(self, x, y, inplace_a=False, name=None):
        return self._op("add", name, x=x, y=y, inplace_a=bool(inplace_a))

    def subtract(self, x, y, inplace_a=False, name=None):
        return self._op("subtract", name, x=x, y=y, inplace_a=bool(inplace_a))

    def multiply(self, x, y, inplace_a=False, name=None):
        return self._op("multiply", name, x=x, y=y, inplace_a=bool(inplace_a))

    def divide(self, x, y, inplace_a=False, name=None):
        return self._op("divide", name, x=x, y=y, inplace_a=bool(inplace_a))

    def max(self, x, y, inplace_a=False, name=None):
        return self._op("max", name, x=x, y=y, inplace_a=bool(inplace_a))

    def min(self, x, y, inplace_a=False, name=None):
        return self._op("min", name, x=x, y=y, inplace_a=bool(inplace_a))

    # -- layers with weights -------------------------------------------------------
    def dense(self, input, out_dim, activation=ActiMode.AC_MODE_NONE, use_bias=True,
              datatype=DataType.DT_NONE, shared_op=None, kernel_initializer=None,
              bias_initializer=None, kernel_regularizer=None, name=None):
        """y = x W^T + b over the last axis; kernel (out_dim, in_dim) as torch.nn.Linear."""
        if kernel_regularizer is not None and kernel_regularizer.type != RegularizerMode.REG_MODE_L2:
            raise UnsupportedByFlexFlowError(f"dense: only L2 kernel regularisation exists in FlexFlow, "
                                             f"got {kernel_regularizer.type.name}")
        out = self._op("dense", name, input=input, out_dim=int(out_dim), activation=activation,
                       use_bias=bool(use_bias), datatype=datatype,
                       initializers=(kernel_initializer or GlorotUniformInitializer(0), bias_initializer))
        if kernel_regularizer is not None:
            out.owner_op.handle.regularizer = float(kernel_regularizer._lambda)
        return out

    def conv2d(self, input, out_channels, kernel_h, kernel_w, stride_h, stride_w,
               padding_h, padding_w, activation=ActiMode.AC_MODE_NONE, groups=1,
               use_bias=True, shared_op=None, kernel_initializer=None,
               bias_initializer=None, name=None):
        """NCHW convolution, symmetric zero padding, no dilation; kernel
        (out, in/groups, kh, kw) as torch.nn.Conv2d."""
        return self._op("conv2d", name, input=input, out_channels=int(out_channels), kernel_h=int(kernel_h),
                        kernel_w=int(kernel_w), stride_h=int(stride_h), stride_w=int(stride_w),
                        padding_h=int(padding_h), padding_w=int(padding_w), activation=activation,
                        groups=int(groups), use_bias=bool(use_bias),
                        initializers=(kernel_initializer or GlorotUniformInitializer(0), bias_initializer))

    def pool2d(self, input, kernel_h, kernel_w, stride_h, stride_w, padding_h, padding_w,
               pool_type=PoolType.POOL_MAX, activation=ActiMode.AC_MODE_NONE, name=None):
        """Max or average pooling; average excludes padding (cuDNN's mode)."""
        return self._op("pool2d", name, input=input, kernel_h=int(kernel_h), kernel_w=int(kernel_w),
                        stride_h=int(stride_h), stride_w=int(stride_w), padding_h=int(padding_h),
                        padding_w=int(padding_w), pool_type=pool_type, activation=activation)

    def embedding(self, input, num_embeddings, embedding_dim, aggr, dtype=DataType.DT_FLOAT,
                  shared_op=None, kernel_initializer=None, name=None):
        """Table lookup; AGGR_MODE_SUM/AVG reduce the last input axis (a bag)."""
        return self._op("embedding", name, input=input, num_embeddings=int(num_embeddings),
                        embedding_dim=int(embedding_dim), aggr=aggr, dtype=dtype,
                        initializers=(kernel_initializer or GlorotUniformInitializer(42),))

    def batch_norm(self, input, relu=True, name=None):
        return self._op("batch_norm", name, input=input, relu=bool(relu))

    def flat(self, input, name=None):
        """(N, C, H, W) -> (N, C*H*W), row-major; the output is float."""
        return self._op("flat", name, input=input)

    # -- normalisation -------------------------------------------------------------
    def layer_norm(self, input, axes, elementwise_affine=True, eps=1e-5, use_bias=True, name=None):
        """LayerNorm over the last k axes; `axes` is in Legion order and must be [0..k-1]."""
        return self._op("layer_norm", name, input=input, axes=list(axes),
                        elementwise_affine=bool(elementwise_affine), eps=float(eps), use_bias=bool(use_bias))

    def rms_norm(self, input, eps, dim, name=None):
        """x * rsqrt(mean(x^2, last axis) + eps) * w; `dim` is the last axis' size."""
        return self._op("rms_norm", name, input=input, eps=float(eps), dim=int(dim))

    def residual_layer_norm(self, input, residual1, residual2, use_two_residuals, axes,
                            elementwise_affine=True, eps=1e-5, use_bias=True,
                            inplace_residual=False, name=None):
        _inference_only("residual_layer_norm", "add followed by layer_norm")

    def add_bias_residual_layer_norm(self, input, residual, axes, elementwise_affine=True,
                                     eps=1e-5, use_bias=True, inplace_residual=False,
                                     name=None):
        _inference_only("add_bias_residual_layer_norm", "add followed by layer_norm")

    def residual_rms_norm(self, input1, input2, eps, dim, inplace_residual=False, name=None):
        _inference_only("residual_rms_norm", "add followed by rms_norm")

    def sigmoid_silu_multi(self, input1, input2, name=None):
        _inference_only("sigmoid_silu_multi", "multiply(multiply(x, sigmoid(x)), y)")

    # -- data movement -------------------------------------------------------------
    def concat(self, tensors, axis, name=None):
        if not isinstance(tensors, list):
            raise TypeError("concat takes a Python list of tensors")
        return self._op("concat", name, tensors=tensors, axis=int(axis))

    def split(self, input, sizes, axis, name=None):
        """Split along a non-negative `axis` into `sizes` (int: that many equal pieces)."""
        return self._op("split", name, input=input, sizes=sizes if isinstance(sizes, int) else list(sizes),
                        axis=int(axis))

    def reshape(self, input, shape, name=None):
        return self._op("reshape", name, input=input, shape=[int(s) for s in shape])

    def transpose(self, input, perm, name=None):
        """Output axis j is input axis perm[j] (NumPy semantics)."""
        return self._op("transpose", name, input=input, perm=[int(p) for p in perm])

    def reverse(self, input, axis, name=None):
        return self._op("reverse", name, input=input, axis=axis)

    def gather(self, input, index, dim, name=None):
        """torch.gather; `index` equals `input` on every axis but `dim`."""
        return self._op("gather", name, input=input, index=index, dim=int(dim))

    # -- reductions and products -----------------------------------------------------
    def reduce_sum(self, input, axes, keepdims=False, name=None):
        return self._op("reduce_sum", name, input=input, axes=[int(a) for a in axes], keepdims=bool(keepdims))

    def mean(self, input, dims, keepdims=False, name=None):
        return self._op("mean", name, input=input, dims=dims, keepdims=keepdims)

    def softmax(self, input, axis=-1, name=None):
        return self._op("softmax", name, input=input, axis=int(axis))

    def batch_matmul(self, A, B, a_seq_length_dim=None, b_seq_length_dim=None, name=None):
        """(..., M, K) @ (..., K, N); equal ranks and equal batch axes, no broadcasting."""
        return self._op("batch_matmul", name, A=A, B=B, a_seq_length_dim=a_seq_length_dim,
                        b_seq_length_dim=b_seq_length_dim)

    def multihead_attention(self, query, key, value, embed_dim, num_heads, kdim=0, vdim=0,
                            dropout=0.0, bias=True, add_bias_kv=False, add_zero_attn=False,
                            kernel_initializer=None, name=None):
        """FlexFlow's cuDNN attention: no 1/sqrt(d) scaling, no mask, no bias."""
        q, k, v = (t.handle if hasattr(t, "handle") else t for t in (query, key, value))
        same = ("q", "q" if k is q else "k", "q" if v is q else ("k" if v is k else "v"))
        return self._op("multihead_attention", name, query=query, key=key, value=value,
                        embed_dim=int(embed_dim), num_heads=int(num_heads), kdim=int(kdim), vdim=int(vdim),
                        dropout=float(dropout), bias=bool(bias), add_bias_kv=bool(add_bias_kv),
                        add_zero_attn=bool(add_zero_attn), same=same,
                        initializers=(kernel_initializer or GlorotUniformInitializer(0),))
