"""Repository-wide pytest configuration.

The skips that name what a host lacks (root for ``interop``, tshark for ``tshark``) live in the ipseclab
pytest plugin (``ipseclab/pytest_plugin.py``, a ``pytest11`` entry point), so every project that installs
ipseclab gets them; this file is kept for settings that concern this repository alone.
"""
