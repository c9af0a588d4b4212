"""Cryptography for IKEv2, ESP and AH: the only package that touches the primitives.

Transforms are looked up by their IANA id (``get_encr``, ``get_prf``,
``get_integ``, ``get_ke_group``); key derivation and AUTH computation are plain
functions over bytes.

The names below are imported on first use (PEP 562): importing one submodule (``crypto.cipher``
for ``ipseclab decrypt``, say) no longer loads all the others (key derivation, signatures, DH).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..lazy import lazy_getattr

if TYPE_CHECKING:
    from .auth import psk_auth, sign_auth, signed_octets, verify_auth
    from .cipher import Encr, KeyedCipher, get_encr, supported_encrs
    from .dh import KeGroup, KeyExchange, get_ke_group, modp_prime, supported_ke_groups
    from .integ import Integ, get_integ, supported_integs
    from .keys import (
        ChildSaKeys,
        IkeSaKeys,
        IkeSuite,
        child_sa_keys,
        derive_ike_sa,
        ike_sa_keys,
        rekey_skeyseed,
        skeyseed,
    )
    from .prf import Prf, get_prf, supported_prfs
    from .random import random_bytes
    from .registry import AuthMethod, EncrId, EsnId, IntegId, KeId, PrfId, TransformType, transform_name

_SUBMODULE = {  # each public name -> the submodule that defines it, imported on first use
    "AuthMethod": "registry",
    "ChildSaKeys": "keys",
    "Encr": "cipher",
    "EncrId": "registry",
    "EsnId": "registry",
    "IkeSaKeys": "keys",
    "IkeSuite": "keys",
    "Integ": "integ",
    "IntegId": "registry",
    "KeGroup": "dh",
    "KeId": "registry",
    "KeyExchange": "dh",
    "KeyedCipher": "cipher",
    "Prf": "prf",
    "PrfId": "registry",
    "TransformType": "registry",
    "child_sa_keys": "keys",
    "derive_ike_sa": "keys",
    "get_encr": "cipher",
    "get_integ": "integ",
    "get_ke_group": "dh",
    "get_prf": "prf",
    "ike_sa_keys": "keys",
    "modp_prime": "dh",
    "psk_auth": "auth",
    "random_bytes": "random",
    "rekey_skeyseed": "keys",
    "sign_auth": "auth",
    "signed_octets": "auth",
    "skeyseed": "keys",
    "supported_encrs": "cipher",
    "supported_integs": "integ",
    "supported_ke_groups": "dh",
    "supported_prfs": "prf",
    "transform_name": "registry",
    "verify_auth": "auth",
}


__getattr__ = lazy_getattr(__name__, globals(), _SUBMODULE)


__all__ = [
    "AuthMethod",
    "ChildSaKeys",
    "Encr",
    "EncrId",
    "EsnId",
    "IkeSaKeys",
    "IkeSuite",
    "Integ",
    "IntegId",
    "KeGroup",
    "KeId",
    "KeyExchange",
    "KeyedCipher",
    "Prf",
    "PrfId",
    "TransformType",
    "child_sa_keys",
    "derive_ike_sa",
    "get_encr",
    "get_integ",
    "get_ke_group",
    "get_prf",
    "ike_sa_keys",
    "modp_prime",
    "psk_auth",
    "random_bytes",
    "rekey_skeyseed",
    "sign_auth",
    "signed_octets",
    "skeyseed",
    "supported_encrs",
    "supported_integs",
    "supported_ke_groups",
    "supported_prfs",
    "transform_name",
    "verify_auth",
]
