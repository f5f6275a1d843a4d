"""Operations, the top layer: the management API and UI (mgmt/), Prometheus metrics, the CLIs
(ctl/), the pytest plugin, and launch.py, which composes a node with its HTTP services. Nothing
below imports it.
"""
