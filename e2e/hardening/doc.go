// Package hardening performs the attacks: floods and bad input on every
// port a pod or the underlay can reach, spoofing, hostile annotations and
// gossip, each checked by its outcome.
package hardening
