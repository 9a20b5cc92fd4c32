package trails

import (
	"net/netip"
	"os"
	"path/filepath"
	"testing"
)

func TestParseSourceAndIPSet(t *testing.T) {
	dir := t.TempDir()
	csv := filepath.Join(dir, "trails.csv")
	if err := os.WriteFile(csv, []byte("66.66.66.66,malware (test),(static)\r\n6.6.6.6:8443,c2 (test),(static)\r\nevil.com,malware (test),(static)\r\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cidr := filepath.Join(dir, "nets.txt")
	if err := os.WriteFile(cidr, []byte("192.0.2.9/24,lab,(custom)\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for arg, want := range map[string]SourceKind{csv: KindTrailsCSV, dir: KindStaticDir, "cidr:" + cidr: KindCIDRList,
		"custom:" + cidr: KindCustomList, "static:" + dir: KindStaticDir, "csv:" + csv: KindTrailsCSV} {
		s, err := ParseSource(arg, 3)
		if err != nil || s.Kind != want || s.Priority != 3 {
			t.Errorf("%s: %+v %v, want kind %d", arg, s, err, want)
		}
	}
	for _, bad := range []string{"cidr:", filepath.Join(dir, "missing.csv")} {
		if _, err := ParseSource(bad, 0); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	a, _ := ParseSource(csv, 0)
	b, _ := ParseSource("cidr:"+cidr, 1)
	m, err := Merge([]Source{a, b}, NewWhitelist())
	if err != nil {
		t.Fatal(err)
	}
	set := m.IPSet()
	if len(set.IPs) != 2 || set.Other != 1 || len(set.CIDRs) != 1 || set.Stats.Rows != 4 {
		t.Fatalf("IPs %d other %d CIDRs %d rows %d", len(set.IPs), set.Other, len(set.CIDRs), set.Stats.Rows)
	}
	if set.CIDRs[0].Prefix != netip.MustParsePrefix("192.0.2.0/24") || set.Metas[set.CIDRs[0].Meta].Info != "lab" {
		t.Errorf("CIDR %+v", set.CIDRs[0])
	}
	for _, ip := range set.IPs {
		if ip.Addr == netip.MustParseAddr("6.6.6.6") && (ip.Port != 8443 || set.Metas[ip.Meta].Info != "c2 (test)") {
			t.Errorf("ip:port trail %+v", ip)
		}
	}
}
