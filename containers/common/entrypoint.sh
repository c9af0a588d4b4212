#!/bin/sh
# ipseclab peer entrypoint.  The host renders the peer's configuration and start scripts into a
# directory mounted on /ipl; this runs the one named by $IPSECLAB_START (default init.sh):
#   init.sh    the daemon on the container's own kernel (hosts whose kernel has ESP/AH), the same
#              script a UML guest's init runs;
#   launch.sh  boots the peer's kernel under User-Mode Linux inside the container, with the
#              container's root as the guest's root (ipseclab.lab.docker_host).
set -e
script=/ipl/${IPSECLAB_START:-init.sh}
[ -f "$script" ] || { echo "ipseclab: nothing at $script: mount the peer directory on /ipl" >&2; exit 2; }
exec /bin/sh "$script"
