"""fastbp.reference: the book's code in plain NumPy, the oracle of fastbp.

Nothing here imports compiled code.  fastbp's compiled layers, functions,
networks and optimizers have the same names and signatures as these, and the
test suite checks them against each other.
"""
from .functions import (sigmoid, sigmoid_grad, relu, relu_grad, softmax,
                        cross_entropy_error, softmax_cross_entropy)
from .gradient import numerical_gradient
from .layers import AddLayer, MulLayer, Relu, ReLU, Sigmoid, Affine, SoftmaxWithLoss
from .layers import BatchNormalization, Convolution, Dropout, Pooling
from .util import im2col, col2im
