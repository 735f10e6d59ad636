"""Graph passes run between capture and conversion, one per file:

* `tied_parameters`   canonicalise parameters that share storage
* `constant_folding`  fold everything that depends on no input and no trainable parameter
* `host_inputs`       computations on the integer inputs alone -> a host-side program feeding extra inputs
* `rms_norm_fusion`   T5/LLaMA RMS norm pattern -> `fused_ops.rms_norm`
* `layer_norm_fusion` hand-written LayerNorm -> `fused_ops.layer_norm`
* `dense_activation_fusion` linear + relu/sigmoid -> `fused_ops.dense`
* `empty_values`      zero-size pieces of concatenations dropped (FlexFlow has no empty tensors)
* `batch_merge`       drop views merging the batch with other axes around row-wise work (OPT)
* `high_rank_views`   >4-D view/expand chains -> one constant gather
"""

from .tied_parameters import canonicalize_tied_parameters
from .constant_folding import fold_constants
from .host_inputs import rows_per_batch, split_host_inputs
from .rms_norm_fusion import fuse_rms_norm
from .layer_norm_fusion import fuse_layer_norm
from .dense_activation_fusion import fuse_dense_activation
from .high_rank_views import collapse_high_rank_views
from .batch_merge import unmerge_batch_views
from .empty_values import drop_empty_cat_inputs

__all__ = ["canonicalize_tied_parameters", "fold_constants", "split_host_inputs", "rows_per_batch", "fuse_rms_norm", "fuse_layer_norm", "fuse_dense_activation",
           "collapse_high_rank_views", "unmerge_batch_views",
           "drop_empty_cat_inputs"]
