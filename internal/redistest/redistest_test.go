package redistest

import (
	"context"
	"testing"

	"github.com/redis/go-redis/v9"
)

func TestStart(t *testing.T) {
	addr := Start(t)
	c := redis.NewClient(&redis.Options{Addr: addr})
	defer c.Close()
	ctx := context.Background()
	if err := c.Ping(ctx).Err(); err != nil {
		t.Fatalf("PING %s: %v", addr, err)
	}
	// Persistence must be off so tests never write dump files.
	if v, err := c.ConfigGet(ctx, "save").Result(); err != nil || v["save"] != "" {
		t.Fatalf("CONFIG GET save = %v, %v; want empty", v, err)
	}
}

func TestStartTwice(t *testing.T) {
	a, b := Start(t), Start(t)
	if a == b {
		t.Fatalf("two servers share address %s", a)
	}
}
