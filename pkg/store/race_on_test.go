//go:build race

package store

// raceEnabled: the race detector makes the full-file comparison take
// ~40 s and it has no goroutines to check, so it is skipped under -race.
const raceEnabled = true
