//go:build !linux

package feeds

// lockDir does not lock off Linux, the only platform the sensor runs on;
// it exists so the package still builds elsewhere (e.g. for tooling).
func lockDir(string) (unlock func(), err error) { return func() {}, nil }
