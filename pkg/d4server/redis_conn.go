package d4server

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// DefaultReplicaTimeout is how long one WAIT for replicas lasts before it is
// repeated (and counted): the write is already on the primary, so it is
// never written twice for a slow replica.
const DefaultReplicaTimeout = time.Second

// IsClusterURL reports whether url names a Redis Cluster: go-redis's cluster
// URL form, redis://HOST:PORT?addr=HOST:PORT&addr=... (any addr parameter).
func IsClusterURL(u string) bool {
	p, err := url.Parse(u)
	return err == nil && p.Query().Has("addr")
}

// rconn is one Redis location of the layout: a server (one database) or a
// cluster (database 0), with the replication a durable write waits for.
type rconn struct {
	redis.UniversalClient
	single  *redis.Client        // nil on a cluster
	cluster *redis.ClusterClient // nil on a single server
	name    string               // the URL without its password, for errors

	replicas int           // WAIT for this many replicas after a durable write
	timeout  time.Duration // per WAIT
	waits    *atomic.Uint64
	log      func(msg string, args ...any)
}

// dialURL returns a client for a URL: a cluster when it has addr
// parameters, else one server and database (db, when >= 0, replaces the
// URL's database).
func dialURL(raw string, db int) (*rconn, error) {
	c := &rconn{name: redactURL(raw)}
	if IsClusterURL(raw) {
		o, err := redis.ParseClusterURL(raw)
		if err != nil {
			return nil, fmt.Errorf("redis cluster url %s: %w", c.name, err)
		}
		if o.ClusterStateReloadInterval == 0 {
			o.ClusterStateReloadInterval = clusterReload
		}
		c.cluster = redis.NewClusterClient(o)
		// go-redis learns a new slot map from MOVED replies only, and a
		// dead primary sends none: after a failover it would keep dialling
		// the dead node until its periodic reload. A failed call reloads
		// the map at once instead.
		c.cluster.AddHook(reloadHook{c.cluster})
		c.UniversalClient = c.cluster
		return c, nil
	}
	o, err := redis.ParseURL(raw)
	if err != nil {
		return nil, fmt.Errorf("redis url %s: %w", c.name, err)
	}
	if db >= 0 {
		o.DB = db
	}
	c.single = redis.NewClient(o)
	c.UniversalClient = c.single
	return c, nil
}

func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable url)"
	}
	return u.Redacted()
}

// ping checks every primary of a cluster, or the server; a URL without addr
// parameters that reaches a cluster node is refused with the form to use.
func (c *rconn) ping(ctx context.Context) error {
	if c.cluster != nil {
		return c.cluster.ForEachShard(ctx, func(ctx context.Context, n *redis.Client) error {
			if err := n.Ping(ctx).Err(); err != nil {
				return fmt.Errorf("%s: %w", n.Options().Addr, err)
			}
			return nil
		})
	}
	if err := c.single.Ping(ctx).Err(); err != nil {
		return err
	}
	info, err := c.single.Info(ctx, "cluster").Result()
	if err == nil && strings.Contains(info, "cluster_enabled:1") {
		return fmt.Errorf("%s is a Redis Cluster node: give the cluster as redis://HOST:PORT?addr=HOST:PORT&addr=HOST:PORT", c.name)
	}
	return nil
}

// durable runs fn's commands in one pipeline on the primary that holds key,
// then waits until c.replicas replicas have them (WAIT on the same
// connection), so a failover to a replica keeps them. A WAIT that times
// out is repeated on that connection, counted and logged: the commands are
// not run again. Without replicas to wait for it is a plain pipeline.
func (c *rconn) durable(ctx context.Context, key string, fn func(p redis.Pipeliner)) error {
	if c.replicas <= 0 {
		_, err := c.Pipelined(ctx, func(p redis.Pipeliner) error { fn(p); return nil })
		return err
	}
	node := c.single
	if c.cluster != nil {
		var err error
		if node, err = c.cluster.MasterForKey(ctx, key); err != nil {
			return err
		}
	}
	conn := node.Conn()
	defer conn.Close()
	var wait *redis.Cmd
	_, err := conn.Pipelined(ctx, func(p redis.Pipeliner) error {
		fn(p)
		wait = p.Do(ctx, "wait", c.replicas, c.timeout.Milliseconds())
		return nil
	})
	if err != nil {
		if c.cluster != nil && movedOrDown(err) {
			// A failover or a resharding: learn the new owner before
			// the caller retries.
			c.cluster.ReloadState(ctx)
		}
		return err
	}
	got, err := wait.Int64()
	if err != nil {
		return err
	}
	for got < int64(c.replicas) {
		c.waits.Add(1)
		c.log("d4server: Redis replicas have not confirmed a write yet; waiting (the sensor is not acknowledged meanwhile)",
			"primary", node.Options().Addr, "replicas", got, "want", c.replicas, "timeout", c.timeout)
		if err := ctx.Err(); err != nil {
			return err
		}
		if got, err = conn.Wait(ctx, c.replicas, c.timeout).Result(); err != nil {
			return err
		}
	}
	return nil
}

// clusterReload is how often a cluster client reads the slot map even when
// nothing failed (go-redis's default is a minute).
const clusterReload = 5 * time.Second

// reloadHook reloads a cluster client's slot map after a call failed on a
// primary that is gone or moved.
type reloadHook struct{ c *redis.ClusterClient }

func (h reloadHook) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h reloadHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		err := next(ctx, cmd)
		if err != nil && movedOrDown(err) {
			h.c.ReloadState(ctx)
		}
		return err
	}
}

func (h reloadHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		err := next(ctx, cmds)
		if err != nil && movedOrDown(err) {
			h.c.ReloadState(ctx)
		}
		return err
	}
}

// movedOrDown reports errors after which a cluster client should reload the
// slot map: a redirection, or a primary that stopped answering.
func movedOrDown(err error) bool {
	s := err.Error()
	if strings.HasPrefix(s, "MOVED ") || strings.HasPrefix(s, "ASK ") || strings.HasPrefix(s, "CLUSTERDOWN") {
		return true
	}
	var ne interface{ Timeout() bool }
	return errors.As(err, &ne) || strings.Contains(s, "connection refused") || strings.Contains(s, "EOF")
}
