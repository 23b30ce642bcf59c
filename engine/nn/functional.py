"""engine.nn.functional: the functional forms of the layers, named as torch.nn.functional."""
from engine.ops import (avg_pool2d, binary_cross_entropy_with_logits, conv2d, cross_entropy,  # noqa: F401
                        dropout, embedding, gelu, layer_norm, linear, log_softmax, max_pool2d,
                        mse_loss, nll_loss, relu, scaled_dot_product_attention, sigmoid, silu,
                        softmax, tanh)

