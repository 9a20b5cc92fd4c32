//go:build !race

package d4fault

const raceEnabled = false
