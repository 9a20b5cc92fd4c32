package d4server

import (
	"context"
	"encoding/binary"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/xtrail/xtrail/pkg/d4"
)

// TestNothingStoredBeforeHMAC attacks the server with frames whose HMAC
// does not verify, or that never complete, and compares the whole store
// before and after each: every key of every Redis database of a real
// redis-server, and every field of the in-process store. Nothing may be
// written for such a peer (spec d4.md §8-§9), not even statistics or an
// Error string. A good session at the end shows the comparison sees
// writes.
func TestNothingStoredBeforeHMAC(t *testing.T) {
	stores := map[string]func(t *testing.T) (Store, func() string){
		"mem": func(*testing.T) (Store, func() string) {
			m := NewMemStore(0)
			return m, func() string { return memDump(m) }
		},
		"redis": func(t *testing.T) (Store, func() string) {
			r, meta, _ := newRedisStore(t)
			addr := meta.Options().Addr
			return r, func() string { return redisDump(t, addr) }
		},
	}
	for _, mode := range []string{ModeRegistration, ModeSharedSecret} {
		for name, mk := range stores {
			t.Run(mode+"/"+name, func(t *testing.T) {
				store, dump := mk(t)
				hmacFirst(t, mode, store, dump)
			})
		}
	}
}

// attack is one connection of a peer that must leave no trace.
type attack struct {
	name string
	uuid string
	key  []byte
	// send writes the frames; it gets the frame bytes of a meta header
	// then two lines, correctly signed with key.
	send func(s *sensor, frames [][]byte)
	// counted names the counter the server must bump for the attack, so
	// the test knows it was processed (and how).
	counted func(Stats) uint64
}

func rejected(reason string) func(Stats) uint64 {
	return func(st Stats) uint64 { return st.Rejected[reason] }
}

func readErrors(st Stats) uint64   { return st.ReadErrors }
func idleTimeouts(st Stats) uint64 { return st.Rejected[ReasonIdle] }

func hmacFirst(t *testing.T, mode string, store Store, dump func() string) {
	ctx := context.Background()
	if err := store.Init(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := store.RegisterQueue(ctx, MetaTypeMaltrail, testQueue, "hmac-first test"); err != nil {
		t.Fatal(err)
	}
	cfg := Config{Store: store, Mode: mode, IdleTimeout: 300 * time.Millisecond,
		Keys: map[string][]byte{otherUUID: otherKey}, DefaultKey: goodKey}
	if mode == ModeRegistration {
		cfg.Keys[goodUUID] = goodKey
		cfg.DefaultKey = []byte("default key, unused in registration mode")
	}
	srv := startServer(t, cfg)
	strangerKey := goodKey // the key a stranger tries: the default key in shared-secret mode
	if mode == ModeRegistration {
		strangerKey = cfg.DefaultKey
	}

	whole := func(s *sensor, frames [][]byte) { s.write(slices.Concat(frames...)) }
	closeWrite := func(s *sensor) {
		if err := s.conn.CloseWrite(); err != nil {
			t.Fatal(err)
		}
	}
	attacks := []attack{
		{"wrong key", goodUUID, []byte("wrong key"), whole, rejected(ReasonHMAC)},
		{"another sensor's key", otherUUID, goodKey, whole, rejected(ReasonHMAC)},
		{"tampered payload", otherUUID, otherKey, func(s *sensor, frames [][]byte) {
			frames[0][len(frames[0])-2] ^= 0x20 // after signing
			whole(s, frames)
		}, rejected(ReasonHMAC)},
		{"tampered uuid", otherUUID, otherKey, func(s *sensor, frames [][]byte) {
			u, _ := d4.ParseUUID(goodUUID)
			copy(frames[0][2:18], u[:]) // a frame of otherUUID claimed for goodUUID
			whole(s, frames)
		}, rejected(ReasonHMAC)},
		{"not v4", notV4UUID, strangerKey, whole, rejected(ReasonNotV4)},
		{"too large", otherUUID, otherKey, func(s *sensor, frames [][]byte) {
			binary.LittleEndian.PutUint32(frames[0][58:62], d4.MaxPayload+1)
			s.write(frames[0][:d4.HeaderSize])
		}, rejected(ReasonTooLarge)},
		{"truncated header", otherUUID, otherKey, func(s *sensor, frames [][]byte) {
			s.write(frames[0][:40])
			closeWrite(s)
		}, readErrors},
		{"truncated frame", otherUUID, otherKey, func(s *sensor, frames [][]byte) {
			s.write(frames[0][:len(frames[0])-3])
			closeWrite(s)
		}, readErrors},
		{"never completed", otherUUID, otherKey, func(s *sensor, frames [][]byte) {
			s.write(frames[0][:len(frames[0])-3]) // and silence: the idle timeout closes it
		}, idleTimeouts},
	}
	if mode == ModeRegistration {
		attacks = append(attacks, attack{"unregistered uuid", strangerU, strangerKey, whole, rejected(ReasonUnregistered)})
	}
	for _, a := range attacks {
		before := dump()
		count := a.counted(srv.Stats())
		s := dialSensor(t, srv, a.uuid, a.key)
		a.send(s, [][]byte{
			s.frameBytes(d4.TypeMeta, `{"type":"maltrail"}`),
			s.frameBytes(d4.TypeExtended, "line one\nline two\n"),
		})
		s.expectClosed()
		// the handler has returned: whatever it stores is stored
		waitUntil(t, func() bool { return srv.Stats().ActiveConns == 0 })
		if got := a.counted(srv.Stats()); got != count+1 {
			t.Errorf("%s: the server's counter went from %d to %d, want +1: the attack was not processed as intended", a.name, count, got)
		}
		if after := dump(); after != before {
			t.Errorf("%s: the store changed before the HMAC verified:\n%s", a.name, diffLines(before, after))
		}
	}
	if st := srv.Stats(); st.Frames != 0 || st.Lines != 0 {
		t.Errorf("frames accepted from the attackers: %+v", st)
	}

	// A good session is seen: the dumps do show writes.
	before := dump()
	good := dialSensor(t, srv, otherUUID, otherKey)
	good.send(d4.TypeMeta, `{"type":"maltrail"}`)
	good.send(d4.TypeExtended, "good line\n")
	waitUntil(t, func() bool { return srv.Stats().Lines == 1 })
	u, _ := d4.ParseUUID(otherUUID)
	after := dump()
	if after == before || !strings.Contains(after, u.Hex()) || !strings.Contains(after, "good line") {
		t.Fatalf("a good session left no trace in the dump:\n%s", diffLines(before, after))
	}
}

// diffLines lists the lines only in a (-) and only in b (+).
func diffLines(a, b string) string {
	la, lb := strings.Split(a, "\n"), strings.Split(b, "\n")
	var out []string
	for _, l := range la {
		if !slices.Contains(lb, l) {
			out = append(out, "- "+l)
		}
	}
	for _, l := range lb {
		if !slices.Contains(la, l) {
			out = append(out, "+ "+l)
		}
	}
	return strings.Join(out, "\n")
}

// redisDump renders every key of every database of the Redis server at
// addr with its type, value and TTL, sorted.
func redisDump(t *testing.T, addr string) string {
	t.Helper()
	ctx := context.Background()
	var lines []string
	for db := 0; db < 16; db++ {
		c := redis.NewClient(&redis.Options{Addr: addr, DB: db})
		it := c.Scan(ctx, 0, "*", 0).Iterator()
		for it.Next(ctx) {
			k := it.Val()
			typ := c.Type(ctx, k).Val()
			var v any
			switch typ {
			case "string":
				v = c.Get(ctx, k).Val()
			case "list":
				v = c.LRange(ctx, k, 0, -1).Val()
			case "set":
				m := c.SMembers(ctx, k).Val()
				slices.Sort(m)
				v = m
			case "zset":
				v = c.ZRangeWithScores(ctx, k, 0, -1).Val()
			case "hash":
				var fs []string
				for f, x := range c.HGetAll(ctx, k).Val() {
					fs = append(fs, f+"="+x)
				}
				slices.Sort(fs)
				v = fs
			default:
				v = c.Dump(ctx, k).Val()
			}
			lines = append(lines, fmt.Sprintf("db%d %s %s %v ttl %v", db, k, typ, v, c.TTL(ctx, k).Val()))
		}
		if err := it.Err(); err != nil {
			t.Fatal(err)
		}
		c.Close()
	}
	slices.Sort(lines)
	return strings.Join(lines, "\n")
}

// memDump renders everything a MemStore holds, unexported fields
// included, map keys sorted: two dumps are equal exactly when the
// contents are. Its lock and wake channels are not contents.
func memDump(m *MemStore) string {
	m.mu.Lock()
	defer m.mu.Unlock()
	var b strings.Builder
	dumpValue(&b, reflect.ValueOf(m).Elem(), "")
	return b.String()
}

var (
	timeType  = reflect.TypeFor[time.Time]()
	mutexType = reflect.TypeFor[sync.Mutex]()
)

func dumpValue(b *strings.Builder, v reflect.Value, indent string) {
	switch v.Kind() {
	case reflect.Pointer, reflect.Interface:
		if v.IsNil() {
			b.WriteString("nil")
			return
		}
		dumpValue(b, v.Elem(), indent)
	case reflect.Struct:
		if v.Type() == timeType {
			fmt.Fprintf(b, "time(%d,%d)", v.Field(0).Uint(), v.Field(1).Int()) // wall, ext
			return
		}
		b.WriteString("{")
		for i := range v.NumField() {
			if v.Field(i).Type() == mutexType || v.Field(i).Kind() == reflect.Chan {
				continue
			}
			fmt.Fprintf(b, "\n%s  %s: ", indent, v.Type().Field(i).Name)
			dumpValue(b, v.Field(i), indent+"  ")
		}
		b.WriteString("}")
	case reflect.Map:
		keys := v.MapKeys()
		slices.SortFunc(keys, func(a, c reflect.Value) int {
			var x, y strings.Builder
			dumpValue(&x, a, "")
			dumpValue(&y, c, "")
			return strings.Compare(x.String(), y.String())
		})
		b.WriteString("map[")
		for _, k := range keys {
			fmt.Fprintf(b, "\n%s  ", indent)
			dumpValue(b, k, indent+"  ")
			b.WriteString(" => ")
			dumpValue(b, v.MapIndex(k), indent+"  ")
		}
		b.WriteString("]")
	case reflect.Slice, reflect.Array:
		b.WriteString("[")
		for i := range v.Len() {
			dumpValue(b, v.Index(i), indent)
			b.WriteString(" ")
		}
		b.WriteString("]")
	case reflect.String:
		fmt.Fprintf(b, "%q", v.String())
	case reflect.Bool:
		fmt.Fprint(b, v.Bool())
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		fmt.Fprint(b, v.Int())
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		fmt.Fprint(b, v.Uint())
	case reflect.Float32, reflect.Float64:
		fmt.Fprint(b, v.Float())
	default:
		fmt.Fprintf(b, "<%s>", v.Kind())
	}
}
