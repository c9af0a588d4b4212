"""The runnable Python endpoint: the IKEv2 engine and the ESP data plane over real sockets.

``ike/`` and ``esp/`` are sans-I/O; this package is where sockets, the clock and the control
channel live (see docs/architecture.md).  ``python -m ipseclab.endpoint`` runs one endpoint,
normally inside a lab namespace, driven over stdin/stdout by ``lab.runtimes.process``.
"""
