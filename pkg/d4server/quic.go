package d4server

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/xtrail/xtrail/pkg/d4"
)

// QUIC transport limits. A D4 session is one bidirectional stream; its
// receive windows bound what a peer can make the server buffer.
const (
	quicStreamWindow = 4 << 20
	quicIdleTimeout  = time.Minute // the sensor's own, shorter, idle timeout wins
	// ackWriteTimeout bounds an acknowledgement write: a sensor that
	// stops reading its acks is gone.
	ackWriteTimeout = 10 * time.Second
	// rejectLinger lets a rejection record leave before the close, which
	// would otherwise discard it.
	rejectLinger = 200 * time.Millisecond
	udpBuffers   = 8 << 20
)

// QUICListener accepts D4 sessions over QUIC (ALPN d4). Make it with
// Server.ListenQUIC and run it with Server.ServeQUIC.
type QUICListener struct {
	pc    *net.UDPConn
	tr    *quic.Transport
	ln    *quic.Listener
	once  sync.Once
	close error
}

// Addr is the UDP address listened on.
func (l *QUICListener) Addr() net.Addr { return l.pc.LocalAddr() }

// Close stops the listener and closes its connections. Later calls return
// the first call's result.
func (l *QUICListener) Close() error {
	l.once.Do(func() { l.close = errors.Join(l.ln.Close(), l.tr.Close(), l.pc.Close()) })
	return l.close
}

// ListenQUIC listens on the UDP address addr with the certificate of
// ListenTLS. A connection takes its slot (Admit) when its first packet
// arrives, before the handshake, and gives it back when it ends.
//
// The stateless reset key is derived from the certificate's private key, so
// a server restarted with the same key resets the connections of its
// previous run at their next packet: the sensors notice at once instead of
// waiting for their idle timeout.
func (s *Server) ListenQUIC(addr, certFile, keyFile string) (*QUICListener, error) {
	if keyFile == "" {
		keyFile = certFile
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("d4server: load TLS certificate: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(cert.PrivateKey)
	if err != nil {
		return nil, fmt.Errorf("d4server: QUIC reset key: %w", err)
	}
	resetKey := quic.StatelessResetKey(sha256.Sum256(append([]byte("xtrail d4 QUIC stateless reset\x00"), der...)))
	ua, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return nil, fmt.Errorf("d4server: QUIC address %s: %w", addr, err)
	}
	pc, err := net.ListenUDP("udp", ua)
	if err != nil {
		return nil, fmt.Errorf("d4server: listen on UDP %s: %w", addr, err)
	}
	if err := d4.SetUDPBuffers(pc, udpBuffers); err != nil {
		d4.BufferWarner(s.log)(err)
	}
	tr := &quic.Transport{
		Conn:              pc,
		StatelessResetKey: &resetKey,
		ConnContext: func(ctx context.Context, info *quic.ClientInfo) (context.Context, error) {
			release, ok := s.Admit(ctx, info.RemoteAddr)
			if !ok {
				return nil, errors.New("refused")
			}
			context.AfterFunc(ctx, release) // the connection's context ends with it
			return ctx, nil
		},
	}
	ln, err := tr.Listen(&tls.Config{
		Certificates: []tls.Certificate{cert},
		MinVersion:   tls.VersionTLS13,
		NextProtos:   []string{d4.ALPN},
	}, &quic.Config{
		MaxIdleTimeout:                 quicIdleTimeout,
		InitialStreamReceiveWindow:     quicStreamWindow / 4,
		MaxStreamReceiveWindow:         quicStreamWindow,
		InitialConnectionReceiveWindow: quicStreamWindow / 4,
		MaxConnectionReceiveWindow:     quicStreamWindow,
		MaxIncomingStreams:             1,
		MaxIncomingUniStreams:          -1,
	})
	if err != nil {
		tr.Close()
		pc.Close()
		return nil, fmt.Errorf("d4server: QUIC listener: %w", err)
	}
	return &QUICListener{pc: pc, tr: tr, ln: ln}, nil
}

// ServeQUIC accepts QUIC connections on ln until ctx is done, then closes
// ln and every connection, waits for their handlers and returns nil. Each
// connection's one stream runs HandleStream, and the server acknowledges
// each handled frame on it (docs/architecture.md: Acknowledgements).
func (s *Server) ServeQUIC(ctx context.Context, ln *QUICListener) error {
	defer ln.Close()
	// Closing the listener on shutdown closes the connections too, so no
	// handler waits on an acknowledgement write.
	stop := context.AfterFunc(ctx, func() { _ = ln.Close() })
	defer stop()
	return acceptLoop(ctx, s.log, "QUIC accept", ln.ln.Accept,
		func(err error) bool { return errors.Is(err, net.ErrClosed) || errors.Is(err, quic.ErrServerClosed) },
		func(conn *quic.Conn) { s.serveQUICConn(ctx, conn) })
}

// serveQUICConn runs the session of one QUIC connection.
func (s *Server) serveQUICConn(ctx context.Context, conn *quic.Conn) {
	actx, cancel := context.WithTimeout(ctx, s.idle)
	str, err := conn.AcceptStream(actx)
	cancel()
	if err != nil {
		conn.CloseWithError(0, "no stream")
		return
	}
	var rec [d4.AckSize]byte
	reason := ""
	s.HandleStream(ctx, str, conn.RemoteAddr(), func(kind AckKind, done uint64, why string) error {
		if kind == AckRejected {
			reason = why
		}
		_ = str.SetWriteDeadline(time.Now().Add(ackWriteTimeout))
		_, err := str.Write(d4.AppendAck(rec[:0], d4.Ack{Kind: uint8(kind), Count: done}))
		return err
	})
	if reason == "" {
		conn.CloseWithError(0, "")
		return
	}
	// The close would discard the record if it overtook it; the reason
	// travels with the close either way.
	select {
	case <-conn.Context().Done():
	case <-time.After(rejectLinger):
	}
	conn.CloseWithError(d4.CloseRejected, reason)
}
