# Makes the packaged /etc/coral/coral.conf from etc/coral.conf (every option with its
# default, three nodes on this machine): the paths of an installed system. run_dir is
# /run/coral/LABEL because coral-node@LABEL.service finds the supervisor's pidfile there;
# data_dir (Raft's log, the incarnation) must outlive a reboot, so not under /run.
BEGIN {
	print "# Installed by the coral package. Paths: run_dir /run/coral/LABEL (the unit"
	print "# coral-node@LABEL.service reads the pidfile there), data_dir /var/lib/coral/LABEL,"
	print "# shared storage /var/lib/coral/shared, the daemons in /usr/sbin."
}
/^\[node\.[A-Za-z0-9_-]+\]$/ { label = substr($0, 7, length($0) - 7) }
/^run_dir = / { print "run_dir = /run/coral/" label; n++; next }
/^data_dir =$/ { print "data_dir = /var/lib/coral/" label; n++; next }
/^shared_dir = / { print "shared_dir = /var/lib/coral/shared"; n++; next }
/^bin_dir =$/ { print "bin_dir = /usr/sbin"; n++; next }
{ print }
END { if (n < 3) { print "coral-conf.awk: the lines to change were not found" > "/dev/stderr"; exit 1 } }
