"""The ESP/AH data plane, sans-I/O: SAs on bytes, anti-replay, ESN, NAT-T, TFC and an SPD.

``EspSA`` and ``AhSA`` turn IP packets into protected ones and back (``protect`` /
``unprotect`` on bytes; ``encrypt`` / ``decrypt`` on Scapy packets at the REPL).  Nothing
here opens a socket, reads a clock or starts a process; randomness comes from an
injectable ``rng``.  See docs/architecture.md for where this sits.
"""

from .ah import AhSA, zero_mutable
from .common import Mode, SaCounters
from .esp import EspSA, nat_keepalive
from .replay import ReplayWindow
from .spd import Action, Policy, Spd
from .ts import Flow, Selectors, TrafficSelector, packet_flow
from .xfrm_names import XfrmAlgorithms, esp_algorithms, integ_from_xfrm, xfrm_args

__all__ = [
    "Action",
    "AhSA",
    "EspSA",
    "Flow",
    "Mode",
    "Policy",
    "ReplayWindow",
    "SaCounters",
    "Selectors",
    "Spd",
    "TrafficSelector",
    "XfrmAlgorithms",
    "esp_algorithms",
    "integ_from_xfrm",
    "nat_keepalive",
    "packet_flow",
    "xfrm_args",
    "zero_mutable",
]
