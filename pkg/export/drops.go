package export

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"net"
	"os"
	"strconv"
)

// dropWatch reads the kernel's drop counter of the UDP sockets that receive
// on a local address and port: the datagrams their full receive buffers
// refused. UDP tells the sender nothing about those; for a receiver on this
// host the counter does.
type dropWatch struct {
	port int
	ip   net.IP
	buf  []byte
}

// read returns the drops of every socket bound to the port on the address
// or a wildcard, IPv4 and IPv6 (a dual-stack receiver is in udp6). A file
// that cannot be read counts nothing.
func (d *dropWatch) read() uint64 {
	var n uint64
	for _, f := range []string{"/proc/net/udp", "/proc/net/udp6"} {
		b, err := readInto(f, d.buf[:0])
		d.buf = b
		if err != nil {
			continue
		}
		n += d.sum(b)
	}
	return n
}

func readInto(name string, buf []byte) ([]byte, error) {
	f, err := os.Open(name)
	if err != nil {
		return buf, err
	}
	defer f.Close()
	w := bytes.NewBuffer(buf)
	_, err = w.ReadFrom(f)
	return w.Bytes(), err
}

// sum adds the drops (the last column) of the matching lines of a
// /proc/net/udp{,6} table: "sl local_address rem_address st ... drops",
// addresses as hex in host byte order, ":PORT" in hex.
func (d *dropWatch) sum(table []byte) uint64 {
	var n uint64
	sc := bufio.NewScanner(bytes.NewReader(table))
	sc.Scan() // header
	for sc.Scan() {
		f := bytes.Fields(sc.Bytes())
		if len(f) < 13 {
			continue
		}
		addr, port, ok := bytes.Cut(f[1], []byte(":"))
		if !ok {
			continue
		}
		p, err := strconv.ParseUint(string(port), 16, 32)
		if err != nil || int(p) != d.port || !d.matches(addr) {
			continue
		}
		if v, err := strconv.ParseUint(string(f[len(f)-1]), 10, 64); err == nil {
			n += v
		}
	}
	return n
}

// matches reports whether a table's hex address is d.ip or a wildcard.
func (d *dropWatch) matches(h []byte) bool {
	if len(h) != 8 && len(h) != 32 {
		return false
	}
	// The kernel prints each 32-bit word of the address as a number read
	// in host byte order: writing it back the same way gives the bytes.
	raw := make([]byte, len(h)/2)
	for i := 0; i < len(h); i += 8 {
		v, err := strconv.ParseUint(string(h[i:i+8]), 16, 32)
		if err != nil {
			return false
		}
		binary.NativeEndian.PutUint32(raw[i/2:], uint32(v))
	}
	ip := net.IP(raw)
	return ip.IsUnspecified() || ip.Equal(d.ip)
}
