"""Flows: the Python face of the numba flow table."""

from .community_id import community_id_v1
from .records import FLOW_COLUMNS_DOC, columns_to_frame, flow_columns
from .table import FlowTable, count_flows, flows_from_captures

__all__ = [
    "FLOW_COLUMNS_DOC",
    "FlowTable",
    "columns_to_frame",
    "community_id_v1",
    "count_flows",
    "flow_columns",
    "flows_from_captures",
]
