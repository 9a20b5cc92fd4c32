// Package ctxtime holds the one context-aware wait the retry loops share.
package ctxtime

import (
	"context"
	"time"
)

// Sleep waits d, or until ctx is done, in which case it returns ctx.Err().
func Sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
