"""Flows: the Python face of the numba flow table."""

from .community_id import community_id_v1
from .table import FLOW_COLUMNS_DOC, FlowTable, flows_from_captures

__all__ = ["FLOW_COLUMNS_DOC", "FlowTable", "community_id_v1", "flows_from_captures"]
