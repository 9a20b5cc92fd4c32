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

// TestRestartKeepsOrWipes: with the append-only file a clean restart keeps
// the data; a wiped restart comes back empty.
func TestRestartKeepsOrWipes(t *testing.T) {
	s := StartServer(t, Options{AppendOnly: true})
	c := redis.NewClient(&redis.Options{Addr: s.Addr()})
	defer c.Close()
	ctx := context.Background()
	if err := c.Set(ctx, "kept", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	s.Stop()
	s.Restart()
	if got := c.Get(ctx, "kept").Val(); got != "v" {
		t.Fatalf("after a clean restart GET kept = %q", got)
	}
	s.Stop()
	s.Wipe()
	s.Restart()
	if n := c.Exists(ctx, "kept").Val(); n != 0 {
		t.Fatal("a wiped restart kept the data")
	}
}
