// Package policy tests NetworkPolicy enforcement in the lab: the truth
// tables (every pod pair, protocol and port against the policies), the
// failure modes (fail closed, restarts, nftables failures) and hostile
// policies.
package policy
