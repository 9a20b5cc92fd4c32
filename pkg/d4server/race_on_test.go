//go:build race

package d4server

// raceEnabled: the race detector multiplies a process's memory, so the RSS
// figures of TestSlowLorisMemory mean nothing under it; the run without
// -race checks them.
const raceEnabled = true
