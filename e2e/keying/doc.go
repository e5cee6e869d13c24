// Package keying tests the pairs' post-quantum preshared keys and node key
// rotation across real agents: agreement, rotation, restarts, required mode.
package keying
