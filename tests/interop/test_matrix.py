"""The default matrix: strongSwan, Libreswan, OpenIKED (under UML, real kernel ESP/AH), strongSwan's
kernel-libipsec (a container) and ipseclab's own endpoint, each pair both ways; ``--ipseclab-pair`` and
``--ipseclab-case`` (the pytest plugin's options) pick cells.

A cell a peer cannot do is UNSUPPORTED with the driver's reason, reported as a skip with that reason;
every other cell must pass.

Every cell negotiates on a lab of its own: freshly booted, or (after a cell of the same pair and topology that
passed, ``interop.reusable``) the pair's booted peers reset as a boot leaves them (``lab_pool``,
``Lab.next_cell``); it pings (a lifecycle case performs its steps instead: rekeys,
a killed peer, a TCP download), tears down, then checks Wireshark's view of the run's pcaps with only
the run's key files: every IKE message after IKE_SA_INIT decrypts with a good ICV, every ESP packet
decrypts with a good ICV, the mode and the encapsulation are the declared ones, and what the case promises.
"""

from __future__ import annotations

import pytest

from ipseclab.interop import run_case
from ipseclab.matrix import PASSED, UNSUPPORTED

pytestmark = [pytest.mark.interop, pytest.mark.tshark]


def test_interop(ipseclab_case, ipseclab_pair, interop_out, lab_pool):
    """One cell per case x pair: the plugin parametrises over ``--ipseclab-case`` and ``--ipseclab-pair``
    (default: every case, the main matrix's pairs)."""
    out, results = interop_out
    res = run_case(ipseclab_case, *ipseclab_pair, out, pool=lab_pool)
    results.append(res)
    if res.status == UNSUPPORTED:  # refused before anything ran, by a driver naming what its peer cannot do
        pytest.skip(f"UNSUPPORTED: {res.reason}")
    assert res.status == PASSED, f"{res.status.upper()}: {res.reason}\nrun directory (pcaps, keys, logs): {res.run_dir}"
