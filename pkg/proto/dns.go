package proto

import (
	"encoding/binary"
	"net/netip"
)

// DNS sizes and record types the heuristics look at.
const (
	// MaxNameLen is the longest name text a DNS name renders to: RFC 1035
	// §2.3.4 caps a name at 255 octets of wire format, which is 253
	// characters of dotted text without the final dot.
	MaxNameLen = 253

	dnsHeaderLen  = 12
	dnsMaxWire    = 255 // RFC 1035 §2.3.4
	dnsMaxPtrHops = 127 // a 255-octet name has at most 127 labels, so more hops is a loop

	DNSTypeA     = 1
	DNSTypeCNAME = 5
	DNSTypePTR   = 12
	DNSTypeAAAA  = 28
	DNSClassIN   = 1
)

var (
	errDNSHeader     = newErr("dns header", ErrTruncated)
	errDNSQName      = newErr("dns question name", ErrTruncated)
	errDNSQNamePtr   = newErr("dns question name: compression pointer (not followed, as in Maltrail)", ErrMalformed)
	errDNSQNameLabel = newErr("dns question name: reserved label type", ErrMalformed)
	errDNSQNameLong  = newErr("dns question name: longer than 255 octets", ErrMalformed)
	errDNSQTypeClass = newErr("dns question type and class", ErrTruncated)
	errDNSNoQuestion = newErr("dns answers: question not parsed", ErrMalformed)
	errDNSSkipQ      = newErr("dns answers: skipping further questions", ErrTruncated)
	errDNSName       = newErr("dns record name", ErrTruncated)
	errDNSNameLabel  = newErr("dns record name: reserved label type", ErrMalformed)
	errDNSNameLong   = newErr("dns record name: longer than 255 octets", ErrMalformed)
	errDNSNamePtr    = newErr("dns record name: compression pointer not strictly backwards", ErrMalformed)
	errDNSNameLoop   = newErr("dns record name: too many compression pointers", ErrMalformed)
	errDNSRR         = newErr("dns record fixed fields", ErrTruncated)
	errDNSRData      = newErr("dns record data", ErrTruncated)
)

// DNSMessage is a parsed DNS header and first question. It is caller-owned
// and reused: ParseDNS overwrites every field, and the question name lives
// in a fixed buffer inside it, so parsing allocates nothing.
type DNSMessage struct {
	ID uint16
	// Byte2 and Byte3 are the two flag bytes (header offsets 2 and 3),
	// kept whole because Maltrail's rules test them as bytes: a standard
	// query has Byte2&0xFA == 0, an NXDOMAIN answer has Byte3 == 0x83, a
	// sinkhole candidate Byte3 == 0x80.
	Byte2, Byte3 byte
	QR           bool  // response
	Opcode       uint8 // Byte2 bits 6..3
	RCode        uint8 // Byte3 low 4 bits
	QDCount      uint16
	ANCount      uint16
	NSCount      uint16
	ARCount      uint16

	// The first question, valid when ParseDNS returned nil.
	QType  uint16
	QClass uint16
	// QLabels is the number of labels in the question name.
	QLabels int

	qname    [MaxNameLen + 8]byte // 8 bytes of slack: labels are copied a word at a time
	qnameLen uint8
	msg      []byte // the message, for the answer walk
	qEnd     int    // offset just past the first question; 0 if it did not parse
}

// QName returns the first question's name: lowercase (ASCII), dotted,
// without the final dot, exactly as Maltrail renders it. Label bytes are
// copied as they are (a '.' or a non-printable byte inside a label is not
// escaped); callers validate the name with Maltrail's name regex. The root
// name gives an empty slice. The slice aliases m.
func (m *DNSMessage) QName() []byte { return m.qname[:m.qnameLen:m.qnameLen] }

// IsStandardQuery applies Maltrail's test: QR, opcode and TC all clear.
func (m *DNSMessage) IsStandardQuery() bool { return m.Byte2&0xFA == 0 }

// StripTCPLength removes the 2-byte length prefix that DNS over TCP puts
// before each message (RFC 1035 §4.2.2). The result is bounded by the
// prefix when the payload holds more (pipelined messages) and by the
// payload when the snapshot was cut; ParseDNS reports what is missing. A
// payload shorter than the prefix gives nil.
func StripTCPLength(b []byte) []byte {
	if len(b) < 2 {
		return nil
	}
	n := int(binary.BigEndian.Uint16(b))
	b = b[2:]
	if n < len(b) {
		b = b[:n]
	}
	return b
}

// ParseDNS parses the header and the first question of the DNS message b
// into m.
//
// The question is read as Maltrail reads it: labels from offset 12,
// whatever QDCount says, and a compression pointer is an error rather than
// followed (Maltrail would render garbage that its name regex rejects, so
// the message is dropped either way). On a question error the header
// fields are still valid, since the NXDOMAIN and scan heuristics read them.
func ParseDNS(b []byte, m *DNSMessage) error {
	m.msg = b
	m.qEnd = 0
	m.qnameLen = 0
	m.QLabels = 0
	m.QType, m.QClass = 0, 0
	if len(b) < dnsHeaderLen {
		m.ID, m.Byte2, m.Byte3, m.QR, m.Opcode, m.RCode = 0, 0, 0, false, 0, 0
		m.QDCount, m.ANCount, m.NSCount, m.ARCount = 0, 0, 0, 0
		return errDNSHeader
	}
	m.ID = binary.BigEndian.Uint16(b[0:])
	m.Byte2, m.Byte3 = b[2], b[3]
	m.QR = b[2]&0x80 != 0
	m.Opcode = (b[2] >> 3) & 0x0f
	m.RCode = b[3] & 0x0f
	m.QDCount = binary.BigEndian.Uint16(b[4:])
	m.ANCount = binary.BigEndian.Uint16(b[6:])
	m.NSCount = binary.BigEndian.Uint16(b[8:])
	m.ARCount = binary.BigEndian.Uint16(b[10:])

	off := dnsHeaderLen
	text := 0
	wire := 0
	for {
		if off >= len(b) {
			m.qnameLen = 0
			return errDNSQName
		}
		l := int(b[off])
		switch {
		case l == 0:
			off++
			if len(b)-off < 4 {
				m.qnameLen, m.QLabels = 0, 0
				return errDNSQTypeClass
			}
			m.QType = binary.BigEndian.Uint16(b[off:])
			m.QClass = binary.BigEndian.Uint16(b[off+2:])
			m.qEnd = off + 4
			return nil
		case l&0xC0 == 0xC0:
			m.qnameLen, m.QLabels = 0, 0
			return errDNSQNamePtr
		case l&0xC0 != 0:
			m.qnameLen, m.QLabels = 0, 0
			return errDNSQNameLabel
		}
		wire += 1 + l
		if wire+1 > dnsMaxWire { // +1: the root label still has to fit
			m.qnameLen, m.QLabels = 0, 0
			return errDNSQNameLong
		}
		if len(b)-off-1 < l {
			m.qnameLen, m.QLabels = 0, 0
			return errDNSQName
		}
		if text > 0 {
			m.qname[text] = '.'
			text++
		}
		if len(b)-off-1 >= l+8 {
			// Whole words, lowercased 8 bytes at a time: the bytes
			// read past the label are in b, and those written past it
			// land in the slack or under the next label.
			for i := 0; i < l; i += 8 {
				binary.LittleEndian.PutUint64(m.qname[text+i:], lower8(binary.LittleEndian.Uint64(b[off+1+i:])))
			}
			text += l
		} else {
			text += lowerCopy(m.qname[text:], b[off+1:off+1+l])
		}
		m.qnameLen = uint8(text)
		m.QLabels++
		off += 1 + l
	}
}

// lower8 lowercases the ASCII letters among 8 bytes: a byte's high bit
// is set in upper when it is 'A'..'Z' (7-bit sums that carry into bit 7
// for 'A' and above, and not for 'Z' and below, on bytes under 0x80),
// and 0x80>>2 is the 0x20 that lowercases it.
func lower8(w uint64) uint64 {
	const ones, highs = 0x0101010101010101, 0x8080808080808080
	low := w &^ highs
	upper := (low + (0x80-'A')*ones) &^ (low + (0x80-'Z'-1)*ones) &^ w & highs
	return w | upper>>2
}

// lowerCopy copies src into dst, folding ASCII upper case only: Maltrail
// lowercases the name, and its name regex rejects anything outside ASCII,
// so folding other bytes would change nothing it accepts.
func lowerCopy(dst, src []byte) int {
	n := copy(dst, src)
	for i := range dst[:n] {
		if c := dst[i]; 'A' <= c && c <= 'Z' {
			dst[i] = c + ('a' - 'A')
		}
	}
	return n
}

// DNSRecord is one resource record of the answer section.
type DNSRecord struct {
	Type  uint16
	Class uint16
	TTL   uint32
	// Data is the RDATA, a sub-slice of the message.
	Data []byte
	// Addr is the address of an A (4-byte) or AAAA (16-byte) record, and
	// the zero netip.Addr for any other record or an RDATA of the wrong size.
	Addr netip.Addr
}

// DNSAnswers iterates over the answer section of a parsed message:
//
//	it := m.Answers()
//	for it.Next() {
//		rr := it.Record()
//		...
//	}
//	if err := it.Err(); err != nil { ... }
//
// It follows compression pointers in owner names (unlike the question
// parse, because real answers are almost always compressed), accepting only
// pointers that go strictly backwards and at most 127 of them per name, so
// a crafted loop ends. The iterator is a value holding its own name buffer;
// iterating allocates nothing.
type DNSAnswers struct {
	msg     []byte
	off     int // next record; -1 once the iteration has ended
	skipQ   int // questions still to skip before the first answer
	left    int // answer records still to read
	err     error
	rec     DNSRecord
	name    [MaxNameLen]byte
	nameLen int
}

// Answers returns an iterator over the answer section (ANCount records),
// which starts after all QDCount questions. It needs the first question
// to have parsed, unless QDCount is 0.
func (m *DNSMessage) Answers() DNSAnswers {
	it := DNSAnswers{msg: m.msg, left: int(m.ANCount)}
	switch {
	case len(m.msg) < dnsHeaderLen:
		it.err, it.off = errDNSHeader, -1
	case m.QDCount == 0:
		it.off = dnsHeaderLen
	case m.qEnd == 0:
		it.err, it.off = errDNSNoQuestion, -1
	default:
		it.off = m.qEnd
		it.skipQ = int(m.QDCount) - 1
	}
	return it
}

// Next advances to the next answer record. It returns false at the end of
// the section or on an error, which Err then reports.
func (it *DNSAnswers) Next() bool {
	if it.off < 0 {
		return false
	}
	for ; it.skipQ > 0; it.skipQ-- {
		end, err := skipName(it.msg, it.off)
		if err != nil || len(it.msg)-end < 4 {
			it.fail(errDNSSkipQ)
			return false
		}
		it.off = end + 4
	}
	if it.left == 0 {
		it.off = -1
		return false
	}
	n, end, err := readName(it.msg, it.off, &it.name)
	if err != nil {
		it.fail(err)
		return false
	}
	it.nameLen = n
	b := it.msg
	if len(b)-end < 10 {
		it.fail(errDNSRR)
		return false
	}
	rr := &it.rec
	rr.Type = binary.BigEndian.Uint16(b[end:])
	rr.Class = binary.BigEndian.Uint16(b[end+2:])
	rr.TTL = binary.BigEndian.Uint32(b[end+4:])
	rdlen := int(binary.BigEndian.Uint16(b[end+8:]))
	start := end + 10
	if len(b)-start < rdlen {
		it.fail(errDNSRData)
		return false
	}
	rr.Data = b[start : start+rdlen : start+rdlen]
	rr.Addr = netip.Addr{}
	switch {
	case rr.Type == DNSTypeA && rdlen == 4:
		rr.Addr = netip.AddrFrom4([4]byte(rr.Data))
	case rr.Type == DNSTypeAAAA && rdlen == 16:
		rr.Addr = netip.AddrFrom16([16]byte(rr.Data))
	}
	it.off = start + rdlen
	it.left--
	return true
}

func (it *DNSAnswers) fail(err error) {
	it.err = err
	it.off = -1
	it.rec = DNSRecord{}
	it.nameLen = 0
}

// Record returns the current record; it is overwritten by Next.
func (it *DNSAnswers) Record() *DNSRecord { return &it.rec }

// Name returns the current record's owner name, rendered like QName
// (lowercase, dotted, no final dot) with compression pointers followed.
// The slice aliases the iterator and is overwritten by Next.
func (it *DNSAnswers) Name() []byte { return it.name[:it.nameLen] }

// Err returns the error that ended the iteration, or nil at a clean end.
func (it *DNSAnswers) Err() error { return it.err }

// FirstA returns the address of the first A record of the answer section,
// which Maltrail's sinkhole heuristic looks up as a trail. It returns the
// zero Addr and nil when the section holds none, and the walk's error if it
// failed before finding one.
func (m *DNSMessage) FirstA() (netip.Addr, error) {
	it := m.Answers()
	for it.Next() {
		if rr := it.Record(); rr.Type == DNSTypeA && rr.Addr.IsValid() {
			return rr.Addr, nil
		}
	}
	return netip.Addr{}, it.Err()
}

// readName renders the name at off into dst, following compression
// pointers. It returns the text length and the offset just past the name
// where it started (after the first pointer, if any).
func readName(b []byte, off int, dst *[MaxNameLen]byte) (n, end int, err error) {
	end = -1
	hops := 0
	wire := 0
	lowest := off // pointers must land strictly before every place we have read from
	for {
		if off >= len(b) {
			return 0, 0, errDNSName
		}
		l := int(b[off])
		switch {
		case l == 0:
			if end < 0 {
				end = off + 1
			}
			return n, end, nil
		case l&0xC0 == 0xC0:
			if len(b)-off < 2 {
				return 0, 0, errDNSName
			}
			if end < 0 {
				end = off + 2
			}
			hops++
			if hops > dnsMaxPtrHops {
				return 0, 0, errDNSNameLoop
			}
			target := int(binary.BigEndian.Uint16(b[off:]) & 0x3FFF)
			if target >= lowest {
				return 0, 0, errDNSNamePtr
			}
			lowest = target
			off = target
			continue
		case l&0xC0 != 0:
			return 0, 0, errDNSNameLabel
		}
		wire += 1 + l
		if wire+1 > dnsMaxWire {
			return 0, 0, errDNSNameLong
		}
		if len(b)-off-1 < l {
			return 0, 0, errDNSName
		}
		if n > 0 {
			dst[n] = '.'
			n++
		}
		n += lowerCopy(dst[n:], b[off+1:off+1+l])
		off += 1 + l
	}
}

// skipName returns the offset just past the name at off without following
// pointers: a pointer ends a name wherever it points.
func skipName(b []byte, off int) (int, error) {
	wire := 0
	for {
		if off >= len(b) {
			return 0, errDNSName
		}
		l := int(b[off])
		switch {
		case l == 0:
			return off + 1, nil
		case l&0xC0 == 0xC0:
			if len(b)-off < 2 {
				return 0, errDNSName
			}
			return off + 2, nil
		case l&0xC0 != 0:
			return 0, errDNSNameLabel
		}
		wire += 1 + l
		if wire+1 > dnsMaxWire {
			return 0, errDNSNameLong
		}
		off += 1 + l
	}
}
