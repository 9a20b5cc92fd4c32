package pcap

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"runtime/debug"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// readFile reads every packet of a file through OpenFile.
func readFile(t *testing.T, path string) ([]Packet, error) {
	t.Helper()
	r, err := OpenFile(path)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err := r.Close(); err != nil {
			t.Error(err)
		}
	}()
	return packets(r)
}

// TestOpenFileMatchesStream: a capture file read through its mapping
// (OpenFile) gives the same packets as read as a stream, in every format,
// and for a capture long enough that the pages behind are released as it
// goes; a cut file gives the stream's error.
func TestOpenFileMatchesStream(t *testing.T) {
	var big []synthPkt
	for i := range 30000 { // 45 MB: several release steps
		big = append(big, synthPkt{sec: uint32(i), frac: uint32(i), data: etherFrame(0x0800, bytes.Repeat([]byte{byte(i)}, 1400))})
	}
	ng, _ := buildNG(binary.LittleEndian)
	ngBE, _ := buildNG(binary.BigEndian)
	small := []synthPkt{{sec: 1, frac: 2, data: etherFrame(0x0800, ipv4Packet(1))}, {sec: 3, data: ipv4Packet(2)}}
	dir := t.TempDir()
	for _, c := range []struct {
		name string
		b    []byte
	}{
		{"classic-le", buildClassic(binary.LittleEndian, false, 1, small)},
		{"classic-be-nano", buildClassic(binary.BigEndian, true, 101, small)},
		{"pcapng-le", ng},
		{"pcapng-be", ngBE},
		{"big", buildClassic(binary.LittleEndian, false, 1, big)},
		{"cut", buildClassic(binary.LittleEndian, false, 1, big)[:25<<20]},
	} {
		t.Run(c.name, func(t *testing.T) {
			path := filepath.Join(dir, c.name+".pcap")
			if err := os.WriteFile(path, c.b, 0o600); err != nil {
				t.Fatal(err)
			}
			want, werr := readAll(t, c.b)
			got, gerr := readFile(t, path)
			if (werr == nil) != (gerr == nil) || (werr != nil && werr.Error() != gerr.Error()) {
				t.Fatalf("mapped: error %v, stream: %v", gerr, werr)
			}
			if len(want) == 0 || !reflect.DeepEqual(got, want) {
				t.Fatalf("mapped: %d packets, stream: %d (or they differ)", len(got), len(want))
			}
		})
	}
}

// TestOpenFileNotRegular: a FIFO is read through a buffer; an empty or
// missing file is an error.
func TestOpenFileNotRegular(t *testing.T) {
	dir := t.TempDir()
	capture := buildClassic(binary.LittleEndian, false, 1, []synthPkt{{sec: 1, data: etherFrame(0x0800, ipv4Packet(1))}})
	fifo := filepath.Join(dir, "fifo")
	if err := unix.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	go func() {
		f, err := os.OpenFile(fifo, os.O_WRONLY, 0)
		if err != nil {
			return
		}
		f.Write(capture)
		f.Close()
	}()
	got, err := readFile(t, fifo)
	if err != nil || len(got) != 1 {
		t.Fatalf("FIFO: %d packets, %v", len(got), err)
	}
	empty := filepath.Join(dir, "empty.pcap")
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenFile(empty); err == nil || !errors.Is(err, ErrFormat) || !strings.Contains(err.Error(), "magic") {
		t.Errorf("empty file: %v", err)
	}
	if _, err := OpenFile(filepath.Join(dir, "missing.pcap")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
}

// TestOpenFileShrunk: a mapped file cut while it is read faults on the
// next page it reads; with debug.SetPanicOnFault (as the replay sets it)
// that is a panic the caller recovers, not the end of the process.
func TestOpenFileShrunk(t *testing.T) {
	var pkts []synthPkt
	for i := range 200 {
		pkts = append(pkts, synthPkt{sec: uint32(i), data: etherFrame(0x0800, bytes.Repeat([]byte{1}, 1400))})
	}
	path := filepath.Join(t.TempDir(), "cut.pcap")
	if err := os.WriteFile(path, buildClassic(binary.LittleEndian, false, 1, pkts), 0o600); err != nil {
		t.Fatal(err)
	}
	r, err := OpenFile(path)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if _, err := r.Next(); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(path, 24); err != nil {
		t.Fatal(err)
	}
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	fault := func() (addr any) {
		defer func() { addr = recover() }()
		for range pkts {
			if _, err := r.Next(); err != nil {
				return nil
			}
		}
		return nil
	}()
	if _, ok := fault.(interface{ Addr() uintptr }); !ok {
		t.Fatalf("reading past the cut: %v, want a fault", fault)
	}
}

// FuzzOpenFile: a capture read through its mapping gives what the stream
// reader gives, packets and error, whatever the bytes.
func FuzzOpenFile(f *testing.F) {
	for _, s := range fuzzSeeds() {
		f.Add(s)
	}
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, b []byte) {
		path := filepath.Join(dir, "fuzz.pcap")
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
		want, werr := readAll(t, b)
		got, gerr := readFile(t, path)
		if (werr == nil) != (gerr == nil) || (werr != nil && werr.Error() != gerr.Error()) {
			t.Fatalf("mapped: error %v, stream: %v", gerr, werr)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("mapped: %d packets, stream: %d (or they differ)", len(got), len(want))
		}
	})
}
