//go:build race

package deploytest

// raceEnabled: the deployment tests run external programs (the sensor, the
// provisioning scripts, vagrant) and take most of a minute; make test runs
// them once without the race detector, and its race run skips them.
const raceEnabled = true
