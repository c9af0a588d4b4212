"""Fuzzing ipseclab outside the unit suite: ``python -m tests.fuzz.engine --seconds N``.

``targets`` holds what the CI fuzz tests (``tests/unit/test_ike_fuzz.py``) and the long run share: engines
brought to every state they can reach, the input generators, and the properties checked after each batch.
"""
