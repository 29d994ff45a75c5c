"""A model's forward pass as a graph of primitive operations, and its evaluator.

Every model jaxsal explains (its own ports, a Flax Linen or NNX module, a
plain function) is traced to a flat list of operations (`trace_graph`),
grouped into layers (`analyse`), and run by one evaluator (`evaluate`) that
applies taps, LRP rules, modified rectifiers, beta-smoothing and the
convolution backend as substitutions of single operations. See
docs/architecture.md.
"""

from jaxsal.graph._evaluate import LayerNotFoundError, LrpPlan, evaluate, layer_names
from jaxsal.graph._layers import Analysis, Layer, UnsupportedOperation, analyse, unsupported
from jaxsal.graph._tap import tap
from jaxsal.graph._trace import Graph, trace_graph

__all__ = [
    "Analysis",
    "Graph",
    "Layer",
    "LayerNotFoundError",
    "LrpPlan",
    "UnsupportedOperation",
    "analyse",
    "evaluate",
    "layer_names",
    "tap",
    "trace_graph",
    "unsupported",
]
