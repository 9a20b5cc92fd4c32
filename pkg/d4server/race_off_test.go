//go:build !race

package d4server

const raceEnabled = false
