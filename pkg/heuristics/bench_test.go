package heuristics

import (
	"testing"

	"github.com/xtrail/xtrail/pkg/proto"
)

// The agent-level benchmarks (pkg/sensor) measure a whole candidate; these
// isolate the heuristics' share. Figures belong to a quiet machine.

func BenchmarkHTTPRequestClean(b *testing.B) {
	e := newEngine(b, Config{})
	h := httpReq("GET", "shop.example", "/api/v1/items?category=books&sort=price&page=2")
	ua := []byte("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36")
	b.ReportAllocs()
	for b.Loop() {
		e.WebScan(h, discard{})
		e.UserAgent(ua, discard{})
		e.Request(h, discard{})
	}
}

func BenchmarkHTTPRequestAttack(b *testing.B) {
	e := newEngine(b, Config{})
	h := httpReq("GET", "shop.example", "/items.php?id=1%20union%20all%20select%20username,password%20from%20users")
	b.ReportAllocs()
	for b.Loop() {
		e.Request(h, discard{})
	}
}

func BenchmarkHTTPResponse(b *testing.B) {
	e := newEngine(b, Config{})
	p := []byte("HTTP/1.1 200 OK\r\nServer: nginx\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: 5120\r\n\r\n<html><head><title>Welcome</title>")
	var resp proto.HTTPResponse
	b.ReportAllocs()
	for b.Loop() {
		_ = proto.ParseHTTPResponse(p, &resp)
		e.Response(p, &resp, discard{})
	}
}

func BenchmarkDNSQuery(b *testing.B) {
	e := newEngine(b, Config{})
	q := dnsQ(1000, "www.some-site.example.com")
	b.ReportAllocs()
	for b.Loop() {
		e.Exhaustion(q, discard{})
	}
}

func BenchmarkDNSNXDomain(b *testing.B) {
	e := newEngine(b, Config{})
	q := dnsQ(1000, "x7k2q9vz3mwp1hb.com")
	b.ReportAllocs()
	for b.Loop() {
		e.NXDomain(q, discard{})
	}
}
