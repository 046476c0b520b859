"""Pure forward/backward op pairs.  ``*_forward(...) -> (out, cache)``, ``*_backward(dout, cache) -> grads``."""
from vca_ref.ops.activations import gelu_backward, gelu_forward, silu_backward, silu_forward
from vca_ref.ops.attention import attention_backward, attention_forward
from vca_ref.ops.diff_combine import diff_combine_backward, diff_combine_forward
from vca_ref.ops.dwconv import dwconv3x3_backward, dwconv3x3_forward
from vca_ref.ops.embedding import embedding_backward, embedding_forward
from vca_ref.ops.lambdas import lambda_backward, lambda_forward, lambda_init_for_layer
from vca_ref.ops.layernorm import layernorm_backward, layernorm_forward
from vca_ref.ops.linear import linear_backward, linear_forward
from vca_ref.ops.losses import cross_entropy_backward, cross_entropy_forward, mse_backward, mse_forward
from vca_ref.ops.modulate import modulate_backward, modulate_forward
from vca_ref.ops.patch_embed import patch_embed_backward, patch_embed_forward
from vca_ref.ops.pooling import adaptive_avg_pool_backward, adaptive_avg_pool_forward
from vca_ref.ops.rmsnorm import rmsnorm_backward, rmsnorm_forward
from vca_ref.ops.softmax import softmax_backward, softmax_forward
