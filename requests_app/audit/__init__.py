"""The auditor area: request and event log exports, the opt-out report, yearly metrics."""
