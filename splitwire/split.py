"""Cut any ``torch.nn.Module`` in two at a module named as in ``named_modules()``.

We trace the model with ``torch.fx`` (one graph, each node tagged with the modules it
runs inside), find the last node executed inside the named module, and cut the graph
right after it. A cut is valid only if exactly one tensor crosses it: the module's
output. Residual connections or other values that skip over the cut make it invalid
(the tail would need more than the feature tensor). One exception is made for the batch
size (``x.size(0)``, as in ``x.view(bs, -1)``): the tail recomputes it from the feature
tensor, whose batch dimension is the same.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.fx as fx
from torch.fx.passes.shape_prop import ShapeProp


class SplitError(ValueError):
    pass


@dataclass(frozen=True)
class SplitPoint:
    name: str                 # qualified module name, e.g. "_blocks.8"
    kind: str                 # module class name
    shape: tuple[int, ...]    # feature shape for the example input (batch included)

    @property
    def elements(self) -> int:
        n = 1
        for d in self.shape[1:]:
            n *= d
        return n


@dataclass
class _Traced:
    gm: fx.GraphModule
    nodes: list[fx.Node]
    index: dict[fx.Node, int]


def _trace(model: torch.nn.Module, example: torch.Tensor) -> _Traced:
    model.eval()
    try:
        graph = fx.Tracer().trace(model)
    except Exception as e:  # data-dependent control flow, unsupported ops
        raise SplitError(
            f"torch.fx cannot trace {type(model).__name__}: {e}. Split models whose forward "
            "has no data-dependent Python control flow, or wrap the head/tail yourself.") from e
    gm = fx.GraphModule(model, graph)
    with torch.no_grad():
        ShapeProp(gm).propagate(example)
    nodes = list(gm.graph.nodes)
    return _Traced(gm, nodes, {n: i for i, n in enumerate(nodes)})


def _is_batch_size(node: fx.Node) -> bool:
    """``x.size(0)`` / ``x.size(dim=0)``: the tail can recompute it from the features."""
    if node.op == "call_method" and node.target == "size":
        dim = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim")
        return dim == 0
    return False


def _cut_after(t: _Traced, layer: str) -> tuple[fx.Node, list[fx.Node]]:
    """The node whose value is the module's output, and the batch-size nodes crossing."""
    region = [i for i, n in enumerate(t.nodes) if layer in (n.meta.get("nn_module_stack") or {})]
    again = f"{layer}@"
    if any(k.startswith(again) for n in t.nodes for k in (n.meta.get("nn_module_stack") or {})):
        raise SplitError(f"{layer!r} runs more than once in forward() (shared module); "
                         "pick a module that runs once")
    if not region:
        raise SplitError(f"no module named {layer!r} runs in forward(); see `splitwire export --list`")
    start, end = region[0], region[-1]
    inside = set(region)
    for i in range(start, end + 1):
        if i not in inside and t.nodes[i].op != "get_attr":
            raise SplitError(f"{layer!r} runs more than once in forward() (shared module); "
                             "pick a module that runs once")
    cut = t.nodes[end]
    crossing, sizes = [], []
    for n in t.nodes[: end + 1]:
        if n.op == "get_attr":
            continue  # parameters/buffers are copied into the tail
        if any(t.index[u] > end for u in n.users):
            (sizes if _is_batch_size(n) else crossing).append(n)
    if crossing != [cut]:
        names = ", ".join(sorted(n.name for n in crossing if n is not cut)) or "none"
        raise SplitError(
            f"cannot cut after {layer!r}: values other than its output cross the cut ({names}); "
            "this happens inside residual blocks. Pick a module boundary such as a whole block")
    meta = cut.meta.get("tensor_meta")
    if not hasattr(meta, "shape") or meta.dtype not in (torch.float32, torch.float16):
        raise SplitError(f"the output of {layer!r} is not a single float tensor")
    return cut, sizes


def split_points(model: torch.nn.Module, example: torch.Tensor) -> list[SplitPoint]:
    """Every module after which the model can be cut, in execution order."""
    t = _trace(model, example)
    mods = dict(model.named_modules())
    found: dict[int, SplitPoint] = {}
    for name, mod in mods.items():
        if not name:
            continue
        try:
            cut, _ = _cut_after(t, name)
        except SplitError:
            continue
        if cut.op == "output" or all(u.op == "output" for u in cut.users):
            continue  # cutting after the last layer leaves an empty tail
        # Nested modules ending at the same node (e.g. "_blocks.8" and its last BN): keep outer.
        found.setdefault(t.index[cut], SplitPoint(name, type(mod).__name__, tuple(cut.meta["tensor_meta"].shape)))
    return [found[k] for k in sorted(found)]


def split(model: torch.nn.Module, layer: str, example: torch.Tensor
          ) -> tuple[fx.GraphModule, fx.GraphModule, SplitPoint]:
    """(head, tail, point): ``tail(head(x)) == model(x)``."""
    t = _trace(model, example)
    cut, sizes = _cut_after(t, layer)
    end = t.index[cut]

    head_g = fx.Graph()
    env: dict[fx.Node, fx.Node] = {}
    for n in t.nodes[: end + 1]:
        env[n] = head_g.node_copy(n, lambda a: env[a])
    head_g.output(env[cut])

    tail_g = fx.Graph()
    feats = tail_g.placeholder("features")
    env = {cut: feats}
    for s in sizes:
        env[s] = tail_g.call_method("size", (feats, 0))
    for n in t.nodes[: end + 1]:
        if n.op == "get_attr":
            env[n] = tail_g.node_copy(n)
    for n in t.nodes[end + 1:]:
        env[n] = tail_g.node_copy(n, lambda a: env[a])
    # (the loop above copied the original output node)

    head = fx.GraphModule(t.gm, head_g, class_name="Head")
    tail = fx.GraphModule(t.gm, tail_g, class_name="Tail")
    for gm in (head, tail):
        gm.graph.eliminate_dead_code()
        gm.graph.lint()
        gm.recompile()
    point = SplitPoint(layer, type(dict(model.named_modules())[layer]).__name__,
                       tuple(cut.meta["tensor_meta"].shape))
    return head, tail, point
