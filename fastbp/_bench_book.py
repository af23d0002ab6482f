"""The book's code, transcribed for ``fastbp bench`` (the baseline column).

The bench times the book's own layers and networks beside fastbp's; they are
copied here (MIT, ``../shared/book``'s common/ and ch07/ch08 scripts) so the
installed package can time them without the book on disk.  Each is checked
against the book's module, bit for bit, by tests/test_bench.py.  Nothing
here is fastbp's API.
"""
from collections import OrderedDict
from types import SimpleNamespace

import numpy as np

def softmax(x):
    x = x - np.max(x, axis=-1, keepdims=True)   # overflow guard
    return np.exp(x) / np.sum(np.exp(x), axis=-1, keepdims=True)


def cross_entropy_error(y, t):
    if y.ndim == 1:
        t = t.reshape(1, t.size)
        y = y.reshape(1, y.size)
    if t.size == y.size:
        t = t.argmax(axis=1)
    batch_size = y.shape[0]
    return -np.sum(np.log(y[np.arange(batch_size), t] + 1e-7)) / batch_size


class Relu:
    def __init__(self):
        self.mask = None

    def forward(self, x):
        self.mask = (x <= 0)
        out = x.copy()
        out[self.mask] = 0
        return out

    def backward(self, dout):
        # the book writes dout[self.mask] = 0 in place; a copy keeps dout intact
        # across calls (fastbp.layers.Relu never writes into dout either)
        dx = dout.copy()
        dx[self.mask] = 0
        return dx


class Sigmoid:
    def __init__(self):
        self.out = None

    def forward(self, x):
        out = 1 / (1 + np.exp(-x))
        self.out = out
        return out

    def backward(self, dout):
        return dout * (1.0 - self.out) * self.out


class SoftmaxWithLoss:
    def __init__(self):
        self.loss = self.y = self.t = None

    def forward(self, x, t):
        self.t = t
        self.y = softmax(x)
        self.loss = cross_entropy_error(self.y, self.t)
        return self.loss

    def backward(self, dout=1):
        batch_size = self.t.shape[0]
        if self.t.size == self.y.size:
            dx = (self.y - self.t) / batch_size
        else:
            dx = self.y.copy()
            dx[np.arange(batch_size), self.t] -= 1
            dx = dx / batch_size
        return dx


# chapter 6 (common/layers.py, common/multi_layer_net_extend.py, common/optimizer.py)

class Affine:
    def __init__(self, W, b):
        self.W, self.b = W, b
        self.x = self.original_x_shape = self.dW = self.db = None

    def forward(self, x):
        self.original_x_shape = x.shape
        x = x.reshape(x.shape[0], -1)
        self.x = x
        return np.dot(self.x, self.W) + self.b

    def backward(self, dout):
        dx = np.dot(dout, self.W.T)
        self.dW = np.dot(self.x.T, dout)
        self.db = np.sum(dout, axis=0)
        return dx.reshape(*self.original_x_shape)


class Dropout:
    def __init__(self, dropout_ratio=0.5):
        self.dropout_ratio = dropout_ratio
        self.mask = None

    def forward(self, x, train_flg=True):
        if train_flg:
            self.mask = np.random.rand(*x.shape) > self.dropout_ratio
            return x * self.mask
        return x * (1.0 - self.dropout_ratio)

    def backward(self, dout):
        return dout * self.mask


class BatchNormalization:
    def __init__(self, gamma, beta, momentum=0.9, running_mean=None, running_var=None):
        self.gamma, self.beta, self.momentum = gamma, beta, momentum
        self.input_shape = None
        self.running_mean, self.running_var = running_mean, running_var
        self.batch_size = self.xc = self.xn = self.std = self.dgamma = self.dbeta = None

    def forward(self, x, train_flg=True):
        self.input_shape = x.shape
        if x.ndim != 2:
            x = x.reshape(x.shape[0], -1)
        return self._forward(x, train_flg).reshape(*self.input_shape)

    def _forward(self, x, train_flg):
        if self.running_mean is None:
            self.running_mean = np.zeros(x.shape[1])
            self.running_var = np.zeros(x.shape[1])
        if train_flg:
            mu = x.mean(axis=0)
            xc = x - mu
            var = np.mean(xc**2, axis=0)
            std = np.sqrt(var + 10e-7)
            xn = xc / std
            self.batch_size = x.shape[0]
            self.xc, self.xn, self.std = xc, xn, std
            self.running_mean = self.momentum * self.running_mean + (1 - self.momentum) * mu
            self.running_var = self.momentum * self.running_var + (1 - self.momentum) * var
        else:
            xc = x - self.running_mean
            xn = xc / np.sqrt(self.running_var + 10e-7)
        return self.gamma * xn + self.beta

    def backward(self, dout):
        if dout.ndim != 2:
            dout = dout.reshape(dout.shape[0], -1)
        dbeta = dout.sum(axis=0)
        dgamma = np.sum(self.xn * dout, axis=0)
        dxn = self.gamma * dout
        dxc = dxn / self.std
        dstd = -np.sum((dxn * self.xc) / (self.std * self.std), axis=0)
        dvar = 0.5 * dstd / self.std
        dxc += (2.0 / self.batch_size) * self.xc * dvar
        dmu = np.sum(dxc, axis=0)
        dx = dxc - dmu / self.batch_size
        self.dgamma, self.dbeta = dgamma, dbeta
        return dx.reshape(*self.input_shape)


#: the book's layer classes, as ``MultiLayerNetExtend`` takes them
_BOOK_LAYERS = SimpleNamespace(Affine=Affine, Relu=Relu,
                               BatchNormalization=BatchNormalization,
                               Dropout=Dropout, SoftmaxWithLoss=SoftmaxWithLoss)


class MultiLayerNetExtend:
    """The book's MultiLayerNetExtend (ReLU; batch norm, dropout and weight
    decay as asked) on the given weights ``params`` (W1, b1, ...: the book
    draws them with np.random.randn), its layers taken from ``layers``: the
    book's (``_BOOK_LAYERS``) or fastbp's dropped in (``fastbp.layers``)."""

    def __init__(self, params, use_batchnorm=False, use_dropout=False, dropout_ration=0.5,
                 weight_decay_lambda=0, layers=_BOOK_LAYERS):
        self.params = params
        self.hidden_layer_num = sum(key.startswith("W") for key in params) - 1
        self.use_batchnorm, self.weight_decay_lambda = use_batchnorm, weight_decay_lambda
        self.layers = OrderedDict()
        for idx in range(1, self.hidden_layer_num + 1):
            self.layers['Affine' + str(idx)] = layers.Affine(params['W' + str(idx)],
                                                             params['b' + str(idx)])
            if use_batchnorm:      # (in the params' dtype, so a float32 net stays float32)
                b = params['b' + str(idx)]
                params['gamma' + str(idx)] = np.ones(b.shape[0], b.dtype)
                params['beta' + str(idx)] = np.zeros(b.shape[0], b.dtype)
                self.layers['BatchNorm' + str(idx)] = layers.BatchNormalization(
                    params['gamma' + str(idx)], params['beta' + str(idx)])
            self.layers['Activation_function' + str(idx)] = layers.Relu()
            if use_dropout:
                self.layers['Dropout' + str(idx)] = layers.Dropout(dropout_ration)
        idx = self.hidden_layer_num + 1
        self.layers['Affine' + str(idx)] = layers.Affine(params['W' + str(idx)],
                                                         params['b' + str(idx)])
        self.last_layer = layers.SoftmaxWithLoss()

    def predict(self, x, train_flg=False):
        for key, layer in self.layers.items():
            if "Dropout" in key or "BatchNorm" in key:
                x = layer.forward(x, train_flg)
            else:
                x = layer.forward(x)
        return x

    def loss(self, x, t, train_flg=False):
        y = self.predict(x, train_flg)
        weight_decay = 0
        for idx in range(1, self.hidden_layer_num + 2):
            W = self.params['W' + str(idx)]
            weight_decay += 0.5 * self.weight_decay_lambda * np.sum(W**2)
        return self.last_layer.forward(y, t) + weight_decay

    def gradient(self, x, t):
        self.loss(x, t, train_flg=True)
        dout = self.last_layer.backward(1)
        for layer in reversed(list(self.layers.values())):
            dout = layer.backward(dout)
        grads = {}
        for idx in range(1, self.hidden_layer_num + 2):
            affine = self.layers['Affine' + str(idx)]
            grads['W' + str(idx)] = affine.dW + self.weight_decay_lambda * \
                self.params['W' + str(idx)]
            grads['b' + str(idx)] = affine.db
            if self.use_batchnorm and idx != self.hidden_layer_num + 1:
                grads['gamma' + str(idx)] = self.layers['BatchNorm' + str(idx)].dgamma
                grads['beta' + str(idx)] = self.layers['BatchNorm' + str(idx)].dbeta
        return grads


def sgd_update(params, grads, lr):
    for key in params.keys():
        params[key] -= lr * grads[key]



# the book's common/util.py, common/layers.py (chapter 7) and its two convnets
# (ch07/simple_convnet.py, ch08/deep_convnet.py): predict, loss, gradient

def im2col(input_data, filter_h, filter_w, stride=1, pad=0):
    N, C, H, W = input_data.shape
    out_h = (H + 2 * pad - filter_h) // stride + 1
    out_w = (W + 2 * pad - filter_w) // stride + 1
    img = np.pad(input_data, [(0, 0), (0, 0), (pad, pad), (pad, pad)], "constant")
    col = np.zeros((N, C, filter_h, filter_w, out_h, out_w))
    for y in range(filter_h):
        y_max = y + stride * out_h
        for x in range(filter_w):
            x_max = x + stride * out_w
            col[:, :, y, x, :, :] = img[:, :, y:y_max:stride, x:x_max:stride]
    return col.transpose(0, 4, 5, 1, 2, 3).reshape(N * out_h * out_w, -1)


def col2im(col, input_shape, filter_h, filter_w, stride=1, pad=0):
    N, C, H, W = input_shape
    out_h = (H + 2 * pad - filter_h) // stride + 1
    out_w = (W + 2 * pad - filter_w) // stride + 1
    col = col.reshape(N, out_h, out_w, C, filter_h, filter_w).transpose(0, 3, 4, 5, 1, 2)
    img = np.zeros((N, C, H + 2 * pad + stride - 1, W + 2 * pad + stride - 1))
    for y in range(filter_h):
        y_max = y + stride * out_h
        for x in range(filter_w):
            x_max = x + stride * out_w
            img[:, :, y:y_max:stride, x:x_max:stride] += col[:, :, y, x, :, :]
    return img[:, :, pad:H + pad, pad:W + pad]


class Convolution:
    def __init__(self, W, b, stride=1, pad=0):
        self.W, self.b, self.stride, self.pad = W, b, stride, pad
        self.x = self.col = self.col_W = self.dW = self.db = None

    def forward(self, x):
        FN, C, FH, FW = self.W.shape
        N, C, H, W = x.shape
        out_h = 1 + int((H + 2 * self.pad - FH) / self.stride)
        out_w = 1 + int((W + 2 * self.pad - FW) / self.stride)
        col = im2col(x, FH, FW, self.stride, self.pad)
        col_W = self.W.reshape(FN, -1).T
        out = np.dot(col, col_W) + self.b
        out = out.reshape(N, out_h, out_w, -1).transpose(0, 3, 1, 2)
        self.x, self.col, self.col_W = x, col, col_W
        return out

    def backward(self, dout):
        FN, C, FH, FW = self.W.shape
        dout = dout.transpose(0, 2, 3, 1).reshape(-1, FN)
        self.db = np.sum(dout, axis=0)
        self.dW = np.dot(self.col.T, dout)
        self.dW = self.dW.transpose(1, 0).reshape(FN, C, FH, FW)
        dcol = np.dot(dout, self.col_W.T)
        return col2im(dcol, self.x.shape, FH, FW, self.stride, self.pad)


class Pooling:
    def __init__(self, pool_h, pool_w, stride=2, pad=0):
        self.pool_h, self.pool_w, self.stride, self.pad = pool_h, pool_w, stride, pad
        self.x = self.arg_max = None

    def forward(self, x):
        N, C, H, W = x.shape
        out_h = int(1 + (H - self.pool_h) / self.stride)
        out_w = int(1 + (W - self.pool_w) / self.stride)
        col = im2col(x, self.pool_h, self.pool_w, self.stride, self.pad)
        col = col.reshape(-1, self.pool_h * self.pool_w)
        arg_max = np.argmax(col, axis=1)
        out = np.max(col, axis=1)
        out = out.reshape(N, out_h, out_w, C).transpose(0, 3, 1, 2)
        self.x, self.arg_max = x, arg_max
        return out

    def backward(self, dout):
        dout = dout.transpose(0, 2, 3, 1)
        pool_size = self.pool_h * self.pool_w
        dmax = np.zeros((dout.size, pool_size))
        dmax[np.arange(self.arg_max.size), self.arg_max.flatten()] = dout.flatten()
        dmax = dmax.reshape(dout.shape + (pool_size,))
        dcol = dmax.reshape(dmax.shape[0] * dmax.shape[1] * dmax.shape[2], -1)
        return col2im(dcol, self.x.shape, self.pool_h, self.pool_w, self.stride, self.pad)


class ConvNet:
    """The book's SimpleConvNet / DeepConvNet (their layer lists, predict,
    loss and gradient) on the parameters of a fastbp network of the same
    structure (copies; the book draws its own weights with np.random)."""

    def __init__(self, net):
        from .reference import convnets
        self.params = {key: value.copy() for key, value in net.params.items()}
        p = self.params
        conv = lambda i, c: Convolution(p[f"W{i}"], p[f"b{i}"], c["stride"],  # noqa: E731
                                             c["pad"])
        affine = lambda i: Affine(p[f"W{i}"], p[f"b{i}"])  # noqa: E731
        if isinstance(net, convnets.SimpleConvNet):
            self.layers = [conv(1, net.conv_param), Relu(), Pooling(2, 2, 2),
                           affine(2), Relu(), affine(3)]
            self.param_layers = (0, 3, 5)
        else:
            self.layers = []
            for i, c in enumerate(net.conv_params, start=1):
                self.layers += [conv(i, c), Relu()]
                if i % 2 == 0:
                    self.layers.append(Pooling(2, 2, 2))
            self.layers += [affine(7), Relu(), Dropout(0.5), affine(8),
                            Dropout(0.5)]
            self.param_layers = (0, 2, 5, 7, 10, 12, 15, 18)
        self.last_layer = SoftmaxWithLoss()

    def predict(self, x, train_flg=False):
        for layer in self.layers:
            if isinstance(layer, Dropout):
                x = layer.forward(x, train_flg)
            else:
                x = layer.forward(x)
        return x

    def loss(self, x, t):
        return self.last_layer.forward(self.predict(x, train_flg=True), t)

    def gradient(self, x, t):
        self.loss(x, t)
        dout = self.last_layer.backward(1)
        for layer in reversed(self.layers):
            dout = layer.backward(dout)
        grads = {}
        for i, index in enumerate(self.param_layers, start=1):
            grads[f"W{i}"] = self.layers[index].dW
            grads[f"b{i}"] = self.layers[index].db
        return grads


class SGD:
    def __init__(self, lr=0.01):
        self.lr = lr

    def update(self, params, grads):
        for key in params.keys():
            params[key] -= self.lr * grads[key]
