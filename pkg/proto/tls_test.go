package proto

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

func TestClientHelloSNI(t *testing.T) {
	hello := clientHello(browserExts("tls-evil.example")...)
	rec := tlsRecord(hello)
	// The server_name extension after a large padding extension (RFC
	// 7685), so a snapshot cut before it loses the name.
	padded := tlsRecord(clientHello(tlsExt{Type: 0x0015, Data: make([]byte, 600)}, sniExt("late.example")))
	sniAt := bytes.Index(padded, []byte("late.example"))

	// Hand-edit a copy: the extensions length says one byte more than the
	// ClientHello holds.
	overrun := bytes.Clone(rec)
	extLenAt := 5 + 4 + 2 + 32 + 1 + 32 + 2 + 8 + 2
	overrun[extLenAt+1]++

	tests := []struct {
		name    string
		in      []byte
		want    string
		wantErr error
	}{
		{"browser-like ClientHello", rec, "tls-evil.example", nil},
		{"first host_name of several", tlsRecord(clientHello(sniExt("one.example", "two.example"))), "one.example", nil},
		{"SNI after padding", padded, "late.example", nil},
		{"snapshot cut after the name", padded[:sniAt+len("late.example")], "late.example", nil},
		{"snapshot cut inside the name", padded[:sniAt+4], "", ErrTruncated},
		{"snapshot cut in the padding", padded[:300], "", ErrTruncated},
		{"snapshot cut in the header", rec[:3], "", ErrTruncated},
		{"record cut in the handshake header", rec[:7], "", ErrTruncated},
		{"hello cut after compression methods", tlsRecord(hello[:4+2+32+1+32+2+8+2]), "", ErrTruncated},
		{"no server_name", tlsRecord(clientHello(tlsExt{Type: 0x002b, Data: []byte{2, 3, 4}})), "", ErrNoSNI},
		{"empty extension block", tlsRecord(clientHello()), "", ErrNoSNI},
		{"non-host_name entries only", tlsRecord(clientHello(tlsExt{Type: 0, Data: []byte{0, 4, 1, 0, 1, 'x'}})), "", ErrNoSNI},
		{"empty host_name", tlsRecord(clientHello(tlsExt{Type: 0, Data: []byte{0, 3, 0, 0, 0}})), "", ErrMalformed},
		{"extensions length overruns the hello", overrun, "", ErrMalformed},
		{"application data record", append([]byte{0x17}, rec[1:]...), "", ErrUnsupported},
		{"SSLv2-style header", append([]byte{0x16, 0x02}, rec[2:]...), "", ErrUnsupported},
		{"ServerHello", tlsRecord(append([]byte{2}, hello[1:]...)), "", ErrUnsupported},
		{"empty", nil, "", ErrTruncated},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ClientHelloSNI(tc.in)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("err = %v, want %v", err, tc.wantErr)
				}
				return
			}
			if err != nil || string(got) != tc.want {
				t.Fatalf("got %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}

func TestClientHelloNoExtensions(t *testing.T) {
	// A ClientHello that ends after compression_methods (legal before TLS
	// 1.3) has no SNI; rebuild one with a consistent length.
	body := clientHello()[4:]
	body = body[:len(body)-2] // drop the empty extensions length
	hs := append([]byte{1, 0, byte(len(body) >> 8), byte(len(body))}, body...)
	if _, err := ClientHelloSNIFromHandshake(hs); !errors.Is(err, ErrNoSNI) {
		t.Errorf("err = %v, want ErrNoSNI", err)
	}
	// Bytes after the extension block inside the hello.
	hs = clientHello(sniExt("a.example"))
	hs = append(hs, 0xAA)
	hs[3]++
	if _, err := ClientHelloSNIFromHandshake(hs); !errors.Is(err, ErrMalformed) {
		t.Errorf("trailing bytes: err = %v, want ErrMalformed", err)
	}
}

func TestTLSCorpus(t *testing.T) {
	var got []string
	for _, p := range corpusPayloads(t, "tls_sni.pcap") {
		sni, err := ClientHelloSNI(p.data)
		if err != nil {
			t.Errorf("tls_sni #%d: %v", p.index, err)
		}
		got = append(got, string(sni))
	}
	if strings.Join(got, " ") != "tls-evil.example clean.example" {
		t.Errorf("SNIs = %q", got)
	}
}

func TestClientHelloSNIAllocs(t *testing.T) {
	rec := tlsRecord(clientHello(browserExts("tls-evil.example")...))
	n := testing.AllocsPerRun(100, func() {
		if _, err := ClientHelloSNI(rec); err != nil {
			t.Fatal(err)
		}
		_, _ = ClientHelloSNI(rec[:40]) // error path
	})
	if n != 0 {
		t.Errorf("ClientHelloSNI: %v allocs, want 0", n)
	}
}

func BenchmarkClientHelloSNI(b *testing.B) {
	rec := tlsRecord(clientHello(browserExts("tls-evil.example")...))
	b.ReportAllocs()
	b.SetBytes(int64(len(rec)))
	for b.Loop() {
		if _, err := ClientHelloSNI(rec); err != nil {
			b.Fatal(err)
		}
	}
}

func FuzzClientHelloSNI(f *testing.F) {
	f.Add(tlsRecord(clientHello(browserExts("tls-evil.example")...)))
	f.Add(tlsRecord(clientHello(tlsExt{Type: 0x0015, Data: make([]byte, 60)}, sniExt("late.example", "b.example"))))
	f.Add(tlsRecord(clientHello(tlsExt{Type: 0, Data: []byte{0, 4, 1, 0, 1, 'x'}})))
	f.Add(tlsRecord(clientHello()))
	for _, p := range corpusPayloads(f, "tls_sni.pcap") {
		f.Add(p.data)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		check := func(sni []byte, err error) {
			if err != nil {
				for _, k := range []error{ErrTruncated, ErrMalformed, ErrUnsupported, ErrNoSNI} {
					if errors.Is(err, k) {
						return
					}
				}
				t.Fatalf("untyped error %v", err)
			}
			if len(sni) == 0 || !bytes.Contains(b, sni) {
				t.Fatalf("SNI %q not a non-empty part of the input", sni)
			}
		}
		check(ClientHelloSNI(b))
		if len(b) > 5 {
			check(ClientHelloSNIFromHandshake(b[5:]))
		}
	})
}
