package d4server

import (
	"context"
	"net"
	"slices"
	"testing"
	"time"

	"github.com/xtrail/xtrail/pkg/d4"
)

type ackRecord struct {
	kind   AckKind
	done   uint64
	reason string
}

// TestHandleStreamAcks runs a session on a bare pipe (no TLS), as a QUIC
// stream would carry it, and checks the acknowledgements: one per handled
// frame, counted cumulatively, and the rejection with the count before it.
func TestHandleStreamAcks(t *testing.T) {
	store := NewMemStore(0)
	ctx := context.Background()
	must(store.RegisterQueue(ctx, "maltrail", testQueue, ""))
	srv, err := New(Config{Store: store, Mode: ModeSharedSecret, DefaultKey: goodKey})
	if err != nil {
		t.Fatal(err)
	}
	client, server := net.Pipe()
	defer client.Close()
	acks := make(chan ackRecord, 16)
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer server.Close()
		srv.HandleStream(ctx, server, &net.TCPAddr{IP: net.IPv4(192, 0, 2, 7), Port: 4000},
			func(kind AckKind, n uint64, reason string) error {
				acks <- ackRecord{kind, n, reason}
				return nil
			})
	}()

	u, _ := d4.ParseUUID(goodUUID)
	sg := d4.NewSigner(goodKey)
	now := uint64(time.Now().Unix())
	var b []byte
	b = sg.AppendFrame(b, d4.TypeMeta, u, now, []byte(`{"type":"maltrail"}`))
	b = sg.AppendFrame(b, d4.TypeExtended, u, now, []byte("one\ntwo\n"))
	b = sg.AppendFrame(b, d4.TypeExtended, u, now, []byte("three\n"))
	b = sg.AppendFrame(b, d4.TypeMeta, u, now, []byte(`{"type":"maltrail"}`)) // 254 -> 2: rejected
	go func() { _, _ = client.Write(b) }()

	var got []ackRecord
	for len(got) < 4 {
		select {
		case a := <-acks:
			got = append(got, a)
		case <-time.After(10 * time.Second):
			t.Fatalf("acks so far %v", got)
		}
	}
	want := []ackRecord{{AckStored, 1, ""}, {AckStored, 2, ""}, {AckStored, 3, ""}, {AckRejected, 3, ReasonTypeChange}}
	if !slices.Equal(got, want) {
		t.Fatalf("acks = %v, want %v", got, want)
	}
	<-done
	// The frames acknowledged as stored are in the queue.
	q := newPopper(store.Queue("maltrail", testQueue))
	for _, w := range []string{"one", "two", "three"} {
		if v := must(q.Pop(ctx)); v != w {
			t.Fatalf("queue gave %q, want %q", v, w)
		}
	}
	if info, _ := store.Sensor(u.Hex()); len(info.IPs) != 1 || info.IPs[0][:10] != "192.0.2.7-" {
		t.Fatalf("sensor IPs = %q, want the peer address given to HandleStream", info.IPs)
	}
}
