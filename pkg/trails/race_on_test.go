//go:build race

package trails

// raceEnabled: under the race detector sync.Pool drops items at random,
// so regexp's pooled matchers allocate now and then; allocation counts are
// only asserted without it.
const raceEnabled = true
