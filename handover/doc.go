// Package handover passes a running weft-agent's data plane to the agent
// that replaces it, over a Unix socket in the state directory: the TUN and
// the listening sockets as file descriptors (SCM_RIGHTS), and, at the
// instant the old agent lets go, the state the new one needs to go on (the
// device's peers, the preshared keys and their ages, dormancy, path MTUs).
// It owns the protocol and the socket, not what the state means: the agent
// fills and reads it.
//
// The protocol, one JSON frame at a time (4-byte big-endian length, at most
// MaxFrame bytes):
//
//	successor   hello {versions}        →
//	            ← offer {version, files} + the descriptors   (or refuse {reason})
//	            take                    →                    (or close: abort)
//	            ← released {state}
//
// hello and refuse are frozen for every version: an agent that speaks none
// of the successor's versions refuses, and the successor falls back to a
// plain restart (it waits until the old agent exits). Until take, the old
// agent runs on untouched and the offered descriptors are only duplicates;
// a successor that fails or closes the connection leaves it as it was.
package handover
