# strip-sctp.awk drops, from the conformance suite's base manifests, every
# container that serves SCTP (agnhost porter with SERVE_SCTP_PORT_*): this
# kernel has no SCTP, so those containers crash-loop and no base pod ever
# becomes Ready. Only those containers go; the SCTP tests are skipped
# (e2e/cnp/exclusions.txt), every other test runs against the same pods.
# A container is a list item "        - name:" (8 spaces) in a containers list.
function flush() { if (item != "" && item !~ /SERVE_SCTP_PORT/) printf "%s", item; item = "" }
/^        - name: / { flush(); item = $0 "\n"; next }
item != "" && /^          / { item = item $0 "\n"; next }
{ flush(); print }
END { flush() }
