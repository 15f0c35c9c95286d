"""Recognising the head flatmon can measure, from the model's traced forward (torch.fx).

Supported: the monitored ``nn.Conv2d`` (groups = 1, zero padding) → optional ``nn.BatchNorm2d``
(folded in eval mode) → optional additive shortcut (``out + identity``, as in a torchvision-style
ResNet ``BasicBlock``/``Bottleneck``) → activation (ReLU, LeakyReLU, GELU (erf or tanh), SiLU, Tanh,
or none) → global average pooling (``AdaptiveAvgPool2d(1)``, ``F.adaptive_avg_pool2d(x, 1)`` or
``x.mean((2, 3))``) → flatten/view/dropout → the classifier ``nn.Linear``, whose output is the model's
output (the logits). The path may cross module boundaries (nested ``nn.Sequential``, ResNet blocks):
what is checked is the data flow of one forward pass, not the module tree.

Anything else raises :class:`UnsupportedModelError` naming the offending node.
"""
import operator
from dataclasses import dataclass, field
from typing import Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as TF


class UnsupportedModelError(ValueError):
    """The model's head is outside what flatmon measures; the message says what and why."""


@dataclass
class Head:
    """The recognised head. Names are ``model.named_modules()`` names."""
    conv: nn.Conv2d
    conv_name: str
    classifier: nn.Linear
    classifier_name: str
    stride: Tuple[int, int]
    padding: Tuple[int, int]
    dilation: Tuple[int, int]
    activation: str = "IDENTITY"          # flatmon.v1.ActivationKind name
    negative_slope: float = 0.0
    bn: Optional[nn.BatchNorm2d] = None
    bn_name: Optional[str] = None
    residual: bool = False
    # where the pre-activation Z is captured when it must be sent: (module, call ordinal, "input"|"output")
    z_source: Optional[Tuple[nn.Module, str, int, str]] = None
    path: list = field(default_factory=list)

    @property
    def needs_pre_activation(self):
        """A BN shift or a shortcut is an additive term: flatmon then needs Z itself."""
        return self.bn is not None or self.residual

    def describe(self):
        return " -> ".join(self.path)


_ACT_MODULES = {nn.ReLU: "RELU", nn.LeakyReLU: "LEAKY_RELU", nn.GELU: "GELU", nn.SiLU: "SILU", nn.Tanh: "TANH"}
_ACT_FUNCTIONS = {TF.relu: "RELU", torch.relu: "RELU", TF.relu_: "RELU", torch.relu_: "RELU",
                  TF.leaky_relu: "LEAKY_RELU", TF.gelu: "GELU", TF.silu: "SILU", torch.tanh: "TANH",
                  TF.tanh: "TANH"}
_ACT_METHODS = {"relu": "RELU", "relu_": "RELU", "tanh": "TANH", "tanh_": "TANH"}
_ADD = {operator.add, operator.iadd, torch.add}
_FLATTEN_METHODS = {"flatten", "view", "reshape", "squeeze", "contiguous"}
_NOT_SUPPORTED_ACTS = (nn.ReLU6, nn.ELU, nn.SELU, nn.CELU, nn.Sigmoid, nn.Softplus, nn.Hardswish, nn.Hardtanh,
                       nn.Mish, nn.PReLU, nn.RReLU, nn.Hardsigmoid, nn.LogSigmoid, nn.Softsign)


def _pair(v, what):
    if isinstance(v, int):
        return (v, v)
    v = tuple(int(x) for x in v)
    if len(v) != 2:
        raise UnsupportedModelError("conv %s %r is not 2-D" % (what, v))
    return v


def _module_name(model, m, what):
    if isinstance(m, str):
        try:
            return m, model.get_submodule(m)
        except AttributeError:
            raise UnsupportedModelError("the model has no submodule named %r (the %s)" % (m, what)) from None
    for name, mod in model.named_modules():
        if mod is m:
            return name, m
    raise UnsupportedModelError("the %s (%s) is not a submodule of the model" % (what, type(m).__name__))


def _conv_padding(conv):
    p = conv.padding
    if isinstance(p, str):
        if p == "valid":
            return (0, 0)
        out = []
        for k, d in zip(conv.kernel_size, conv.dilation):
            total = d * (k - 1)
            if total % 2:
                raise UnsupportedModelError(
                    "conv padding='same' with an even effective kernel pads asymmetrically; flatmon supports "
                    "symmetric zero padding only")
            out.append(total // 2)
        return tuple(out)
    return _pair(p, "padding")


def _check_conv(conv, name):
    if type(conv) is not nn.Conv2d and not isinstance(conv, nn.Conv2d):
        raise UnsupportedModelError("the monitored layer %r is a %s; flatmon measures an nn.Conv2d"
                                    % (name, type(conv).__name__))
    if conv.groups != 1:
        raise UnsupportedModelError("conv %r has groups=%d (depthwise/grouped); flatmon supports groups=1 only"
                                    % (name, conv.groups))
    if conv.padding_mode != "zeros":
        raise UnsupportedModelError("conv %r uses padding_mode=%r; flatmon supports zero padding only"
                                    % (name, conv.padding_mode))


def _arg(node, i, key, default):
    if len(node.args) > i:
        return node.args[i]
    return node.kwargs.get(key, default)


def _depends_on(node, target, limit=100000):
    """Whether `node` (an fx Node) is computed from `target`."""
    seen, stack = set(), [node]
    while stack and len(seen) < limit:
        n = stack.pop()
        if n is target:
            return True
        if n in seen or not hasattr(n, "all_input_nodes"):
            continue
        seen.add(n)
        stack.extend(n.all_input_nodes)
    return False


def _ordinal(graph_nodes, node):
    """Index of this call among the graph's calls of the same module (a module may be called twice,
    like the ReLU of a torchvision BasicBlock)."""
    k = 0
    for n in graph_nodes:
        if n is node:
            return k
        if n.op == "call_module" and n.target == node.target:
            k += 1
    raise AssertionError("node not in graph")


def _gap_dims_ok(dims):
    if isinstance(dims, int):
        dims = (dims,)
    try:
        return set(int(d) for d in dims) in ({2, 3}, {-1, -2})
    except TypeError:
        return False


def analyze(model: nn.Module, conv_layer, classifier) -> Head:
    """Traces `model` with torch.fx and checks that `conv_layer` feeds `classifier` through a supported
    head. `conv_layer`/`classifier` are submodules of `model` or their names."""
    conv_name, conv = _module_name(model, conv_layer, "monitored conv layer")
    cls_name, cls = _module_name(model, classifier, "classifier")
    _check_conv(conv, conv_name)
    if not isinstance(cls, nn.Linear):
        raise UnsupportedModelError("the classifier %r is a %s; flatmon needs an nn.Linear after global average "
                                    "pooling" % (cls_name, type(cls).__name__))
    if cls.in_features != conv.out_channels:
        raise UnsupportedModelError(
            "classifier %r has in_features=%d but conv %r has %d output channels: the classifier must act on the "
            "globally pooled output of the monitored conv" % (cls_name, cls.in_features, conv_name, conv.out_channels))
    try:
        gm = torch.fx.symbolic_trace(model)
    except Exception as e:  # noqa: BLE001 - any tracing failure is reported the same way
        raise UnsupportedModelError(
            "cannot trace the model's forward with torch.fx to verify its head (%s: %s). flatmon supports "
            "conv -> [BN] -> [+shortcut] -> activation -> global average pool -> Linear in an nn.Sequential or a "
            "torchvision-style ResNet; data-dependent control flow in forward() cannot be traced"
            % (type(e).__name__, e)) from e
    nodes = list(gm.graph.nodes)
    modules = dict(gm.named_modules())
    calls = [n for n in nodes if n.op == "call_module" and n.target == conv_name]
    if not calls:
        raise UnsupportedModelError("conv %r is never called in the model's forward" % conv_name)
    if len(calls) > 1:
        raise UnsupportedModelError("conv %r is called %d times per forward; flatmon needs exactly one call"
                                    % (conv_name, len(calls)))
    head = Head(conv=conv, conv_name=conv_name, classifier=cls, classifier_name=cls_name,
                stride=_pair(conv.stride, "stride"), padding=_conv_padding(conv),
                dilation=_pair(conv.dilation, "dilation"))
    head.path.append("Conv2d %r" % conv_name)

    def desc(n):
        if n.op == "call_module":
            return "%s %r" % (type(modules[n.target]).__name__, n.target)
        if n.op == "call_function":
            return "%s()" % getattr(n.target, "__name__", str(n.target))
        if n.op == "call_method":
            return ".%s()" % n.target
        if n.op == "output":
            return "the model output"
        return "%s %s" % (n.op, n.target)

    def sole_user(n):
        users = list(n.users)
        if len(users) != 1:
            raise UnsupportedModelError(
                "the output of %s is used %d times (%s); in the supported head every tensor between the conv and "
                "the classifier feeds only the next step" % (desc(n), len(users), ", ".join(desc(u) for u in users)))
        return users[0]

    def mod(n):
        return modules.get(n.target) if n.op == "call_module" else None

    node = calls[0]
    nxt = sole_user(node)

    # optional BatchNorm2d
    if isinstance(mod(nxt), nn.BatchNorm2d):
        bn = mod(nxt)
        if not bn.track_running_stats or bn.running_var is None:
            raise UnsupportedModelError("BatchNorm %r has no running statistics (track_running_stats=False), so it "
                                        "cannot be folded into a per-channel scale" % nxt.target)
        head.bn, head.bn_name = bn, nxt.target
        head.path.append("BatchNorm2d %r (folded: scale = gamma/sqrt(running_var+eps))" % nxt.target)
        bn_node = nxt
        node, nxt = nxt, sole_user(nxt)
    else:
        bn_node = None
        if isinstance(mod(nxt), (nn.BatchNorm1d, nn.BatchNorm3d, nn.GroupNorm, nn.LayerNorm, nn.InstanceNorm2d)):
            raise UnsupportedModelError("%s after conv %r is not supported (only BatchNorm2d in eval mode folds into "
                                        "a per-channel scale)" % (desc(nxt), conv_name))

    # optional additive shortcut
    add_node = None
    if nxt.op == "call_function" and nxt.target in _ADD or nxt.op == "call_method" and nxt.target in ("add", "add_"):
        others = [a for a in list(nxt.args) + list(nxt.kwargs.values()) if a is not node]
        if len(others) != 1 or (nxt.kwargs.get("alpha", 1) != 1):
            raise UnsupportedModelError("unsupported addition %s after %s" % (desc(nxt), desc(node)))
        if hasattr(others[0], "op") and _depends_on(others[0], calls[0]):
            raise UnsupportedModelError("the term added at %s depends on the monitored conv itself; only an "
                                        "independent shortcut can be added" % desc(nxt))
        head.residual = True
        head.path.append("+ shortcut (%s)" % (desc(others[0]) if hasattr(others[0], "op") else repr(others[0])))
        add_node = nxt
        node, nxt = nxt, sole_user(nxt)

    # activation
    act_node = None
    m = mod(nxt)
    if m is not None and type(m) in _ACT_MODULES:
        head.activation = _ACT_MODULES[type(m)]
        if isinstance(m, nn.LeakyReLU):
            head.negative_slope = float(m.negative_slope)
        if isinstance(m, nn.GELU) and getattr(m, "approximate", "none") == "tanh":
            head.activation = "GELU_TANH"
        act_node = nxt
    elif m is not None and isinstance(m, nn.Identity):
        act_node = nxt
    elif m is not None and isinstance(m, _NOT_SUPPORTED_ACTS):
        raise UnsupportedModelError("activation %s after conv %r is not supported; flatmon supports ReLU, LeakyReLU, "
                                    "GELU (erf or tanh), SiLU, Tanh or none" % (desc(nxt), conv_name))
    elif nxt.op == "call_function" and nxt.target in _ACT_FUNCTIONS:
        head.activation = _ACT_FUNCTIONS[nxt.target]
        if head.activation == "LEAKY_RELU":
            head.negative_slope = float(_arg(nxt, 1, "negative_slope", 0.01))
        if head.activation == "GELU" and _arg(nxt, 1, "approximate", "none") == "tanh":
            head.activation = "GELU_TANH"
        act_node = nxt
    elif nxt.op == "call_method" and nxt.target in _ACT_METHODS:
        head.activation = _ACT_METHODS[nxt.target]
        act_node = nxt
    if act_node is not None:
        head.path.append("%s [%s]" % (desc(act_node), head.activation))
        node, nxt = act_node, sole_user(act_node)

    # global average pooling
    m = mod(nxt)
    if isinstance(m, nn.AdaptiveAvgPool2d):
        if m.output_size not in (1, (1, 1), [1, 1]):
            raise UnsupportedModelError("%s has output_size=%r; flatmon needs global average pooling (output size 1)"
                                        % (desc(nxt), m.output_size))
    elif nxt.op == "call_function" and nxt.target is TF.adaptive_avg_pool2d:
        if _arg(nxt, 1, "output_size", None) not in (1, (1, 1), [1, 1]):
            raise UnsupportedModelError("%s is not global (output size must be 1)" % desc(nxt))
    elif (nxt.op == "call_method" and nxt.target == "mean") or (nxt.op == "call_function" and nxt.target is torch.mean):
        dims = _arg(nxt, 1, "dim", None)
        if not _gap_dims_ok(dims):
            raise UnsupportedModelError("%s averages over dims %r; global average pooling averages over (2, 3)"
                                        % (desc(nxt), dims))
    elif isinstance(m, (nn.AdaptiveMaxPool2d, nn.MaxPool2d)) or (
            nxt.op == "call_function" and nxt.target in (TF.adaptive_max_pool2d, TF.max_pool2d)):
        raise UnsupportedModelError("%s: max pooling is not supported; the head needs global average pooling "
                                    "(nn.AdaptiveAvgPool2d(1))" % desc(nxt))
    elif isinstance(m, nn.AvgPool2d) or (nxt.op == "call_function" and nxt.target is TF.avg_pool2d):
        raise UnsupportedModelError("%s: a fixed-size AvgPool2d is not recognised as global; use "
                                    "nn.AdaptiveAvgPool2d(1)" % desc(nxt))
    else:
        raise UnsupportedModelError(
            "after %s comes %s, not a supported activation or global average pooling. flatmon measures conv -> "
            "[BatchNorm2d] -> [+shortcut] -> ReLU/LeakyReLU/GELU/SiLU/Tanh -> AdaptiveAvgPool2d(1) -> flatten -> "
            "Linear" % (desc(node), desc(nxt)))
    pool_node = nxt
    head.path.append("%s [global average pool]" % desc(pool_node))
    node, nxt = nxt, sole_user(nxt)

    # flatten / dropout until the classifier
    while not (nxt.op == "call_module" and nxt.target == cls_name):
        m = mod(nxt)
        if isinstance(m, (nn.Flatten, nn.Dropout, nn.Identity)) or (
                nxt.op == "call_function" and nxt.target in (torch.flatten, TF.dropout, torch.squeeze)) or (
                nxt.op == "call_method" and nxt.target in _FLATTEN_METHODS):
            node, nxt = nxt, sole_user(nxt)
            continue
        raise UnsupportedModelError("after global average pooling comes %s, not the classifier %r (only flatten, view "
                                    "and dropout may sit in between)" % (desc(nxt), cls_name))
    head.path.append("Linear %r" % cls_name)
    cls_calls = [n for n in nodes if n.op == "call_module" and n.target == cls_name]
    if len(cls_calls) != 1:
        raise UnsupportedModelError("classifier %r is called %d times per forward" % (cls_name, len(cls_calls)))
    out = sole_user(nxt)
    if out.op != "output" or out.args[0] is not nxt:
        raise UnsupportedModelError("the classifier's output goes to %s; the model must return the logits of %r "
                                    "directly (the loss is cross-entropy on them)" % (desc(out), cls_name))

    # where to capture Z (only needed with an additive term)
    if head.needs_pre_activation:
        if act_node is not None and act_node.op == "call_module":
            head.z_source = (modules[act_node.target], act_node.target, _ordinal(nodes, act_node), "input")
        elif act_node is None and pool_node.op == "call_module":
            head.z_source = (modules[pool_node.target], pool_node.target, _ordinal(nodes, pool_node), "input")
        elif add_node is None and bn_node is not None:
            head.z_source = (modules[bn_node.target], bn_node.target, _ordinal(nodes, bn_node), "output")
        else:
            raise UnsupportedModelError(
                "the pre-activation after the shortcut addition cannot be hooked because the activation is the "
                "function %s; use a module (e.g. nn.ReLU) for the final activation" % desc(act_node or pool_node))
    return head
