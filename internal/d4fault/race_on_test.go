//go:build race

package d4fault

// raceEnabled: the fault tests run the built binaries and spend a minute
// and a half mostly waiting out faults; make test runs them once without
// the race detector (the client's and server's concurrency is raced in
// pkg/d4 and pkg/d4server), and its race run skips them.
const raceEnabled = true
