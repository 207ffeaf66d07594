"""Execution shared by backtests and live trading: orders, the execution model, the compiled broker."""

from ntlab.execution.orders import EVENT_KINDS, ORDER_TYPES, REJECT_REASONS, ExecutionModel

__all__ = ["EVENT_KINDS", "ORDER_TYPES", "REJECT_REASONS", "ExecutionModel"]
