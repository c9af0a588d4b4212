#!/bin/sh
# ipseclab peer entrypoint: the same contract as the UML guest's init.  The host renders the peer's
# configuration and start script into a directory mounted on /ipl; this runs it.  The script
# (ipseclab.lab.peers) starts the daemon, loads the connection and then serves /ipl/cmd/*.sh.
set -e
mkdir -p /run /tmp
[ -f /ipl/init.sh ] || { echo "ipseclab: nothing at /ipl/init.sh: mount the peer directory on /ipl" >&2; exit 2; }
exec /bin/sh /ipl/init.sh
