// Package archtest holds the tests that keep weft's structure: the pure
// packages (api, peer, plan, policy) import no I/O library, directly or
// through a dependency, so a side effect there is impossible, not unlikely.
package archtest
