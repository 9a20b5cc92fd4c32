package proto

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

const sqliRequest = "GET /items.php?id=1%20UNION%20ALL%20SELECT HTTP/1.1\r\n" +
	"Host: sqli.EXAMPLE:80 \r\n" +
	"User-Agent: Mozilla/5.0%20(sqlmap)\r\n" +
	"X-Forwarded-For: 203.0.113.7, 10.0.0.1\r\n" +
	"Accept: */*\r\n\r\n"

const postRequest = "POST /submit HTTP/1.0\r\n" +
	"Host:postsqli.example\r\n" +
	"Content-Type: application/x-www-form-urlencoded\r\n" +
	"cf-connecting-ip:\t198.51.100.4\r\n" +
	"Content-Length: 35\r\n\r\n" +
	"q=1 UNION ALL SELECT pwd FROM users"

func TestParseHTTPRequest(t *testing.T) {
	type want struct {
		method, path, version string
		hostFound             bool
		host, ua, ct          string // "<nil>" for absent
		xff, cf, tci, fwd     string
		body                  string
	}
	const none = "<nil>"
	str := func(b []byte) string {
		if b == nil {
			return none
		}
		return string(b)
	}
	tests := []struct {
		name    string
		in      string
		want    want
		wantErr error
	}{
		{
			name: "GET with headers",
			in:   sqliRequest,
			want: want{"GET", "/items.php?id=1%20UNION%20ALL%20SELECT", "HTTP/1.1", true, "sqli.EXAMPLE:80",
				"Mozilla/5.0%20(sqlmap)", none, "203.0.113.7", none, none, "203.0.113.7", ""},
		},
		{
			name: "POST with body, lower-case forwarded header, no space after colon",
			in:   postRequest,
			want: want{"POST", "/submit", "HTTP/1.0", true, "postsqli.example", none,
				"application/x-www-form-urlencoded", none, "198.51.100.4", none, "198.51.100.4",
				"q=1 UNION ALL SELECT pwd FROM users"},
		},
		{
			name: "no Host header",
			in:   "GET /mirai.x86 HTTP/1.1\r\nUser-Agent: wget\r\n\r\n",
			want: want{"GET", "/mirai.x86", "HTTP/1.1", false, none, "wget", none, none, none, none, none, ""},
		},
		{
			name: "host header is case-sensitive, as Maltrail's",
			in:   "GET / HTTP/1.1\r\nhost: evil.com\r\nuser-agent: x\r\n\r\n",
			want: want{"GET", "/", "HTTP/1.1", false, none, none, none, none, none, none, none, ""},
		},
		{
			name: "Host cut by the snapshot: found, no value",
			in:   "GET / HTTP/1.1\r\nHost: evil.co",
			want: want{"GET", "/", "HTTP/1.1", true, none, none, none, none, none, none, none, none},
		},
		{
			name: "headers after the body still count (no end-of-headers stop, as Maltrail)",
			in:   "POST /x HTTP/1.1\r\n\r\nbody\r\nHost: late.org\r\n",
			want: want{"POST", "/x", "HTTP/1.1", true, "late.org", none, none, none, none, none, none, "body\r\nHost: late.org\r\n"},
		},
		{
			name: "proxy request and CONNECT keep the target as the path",
			in:   "CONNECT evil.com:443 HTTP/1.1\r\nHost: evil.com:443\r\n\r\n",
			want: want{"CONNECT", "evil.com:443", "HTTP/1.1", true, "evil.com:443", none, none, none, none, none, none, ""},
		},
		{
			name: "forwarded-for needs a word boundary and digits: leftmost valid one wins",
			in: "GET / HTTP/1.1\r\nX-X-Forwarded-For: 1.1.1.1\r\nMyTrue-Client-IP: 2.2.2.2\r\n" +
				"True-Client-IP: unknown\r\nTRUE-CLIENT-IP: 3.3.3.3\r\nX-Forwarded-For: 4.4.4.4\r\n\r\n",
			// "X-X-Forwarded-For": '-' is not a word byte, so \b matches
			// before the second X, exactly as Maltrail's regex does.
			want: want{"GET", "/", "HTTP/1.1", false, none, none, none, "1.1.1.1", none, "3.3.3.3", "1.1.1.1", ""},
		},
		{
			name: "Host value trimmed of Python whitespace",
			in:   "GET / HTTP/1.1\r\nHost:\t\x0b a.org \x1f\r\n\r\n",
			want: want{"GET", "/", "HTTP/1.1", true, "a.org", none, none, none, none, none, none, ""},
		},
		{name: "no CRLF", in: "GET / HTTP/1.1", wantErr: ErrTruncated},
		{name: "empty", in: "", wantErr: ErrTruncated},
		{name: "three spaces", in: "GET /a b HTTP/1.1\r\n\r\n", wantErr: ErrMalformed},
		{name: "one space", in: "GET HTTP/1.1\r\n\r\n", wantErr: ErrMalformed},
		{name: "no HTTP/", in: "GET / FTP/1.1\r\n\r\n", wantErr: ErrMalformed},
		{name: "empty path", in: "GET  HTTP/1.1\r\n\r\n", wantErr: ErrMalformed},
		{name: "empty method", in: " / HTTP/1.1\r\n\r\n", wantErr: ErrMalformed},
		{name: "response is not a request", in: "HTTP/1.1 200 OK\r\n\r\n", wantErr: ErrMalformed},
	}
	var r HTTPRequest
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := ParseHTTPRequest([]byte(tc.in), &r)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("err = %v, want %v", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			xff, cf, tci := r.Forwarded()
			got := want{str(r.Method), str(r.Path), str(r.Version), r.HostFound, str(r.Host), str(r.UserAgent),
				str(r.ContentType), str(xff), str(cf), str(tci),
				str(r.ForwardedFor()), str(r.Body)}
			if got != tc.want {
				t.Errorf("got  %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

func TestParseHTTPResponse(t *testing.T) {
	tests := []struct {
		name                       string
		in                         string
		code                       int
		version, reason, ct, title string
		wantErr                    error
		bodyNil                    bool
		wantBody                   string
	}{
		{
			name: "sinkhole page", in: "HTTP/1.1 200 OK\r\nServer: nginx\r\nContent-Type: text/html \r\n\r\n<html><title>Domain Seized</title>",
			code: 200, version: "HTTP/1.1", reason: "OK", ct: "text/html", title: "Domain Seized",
			wantBody: "<html><title>Domain Seized</title>",
		},
		{
			name: "suspicious content type, no reason", in: "HTTP/1.0 200\r\nContent-Type: application/hta\r\n\r\n",
			code: 200, version: "HTTP/1.0", ct: "application/hta",
		},
		{
			name: "unterminated title: Maltrail's slice to -1", in: "HTTP/1.1 404 Not Found\r\n\r\n<title>This domain name has been seized by",
			code: 404, version: "HTTP/1.1", reason: "Not Found", ct: "<nil>", title: "This domain name has been seized b",
			wantBody: "<title>This domain name has been seized by",
		},
		{
			name: "cut status line: header fields still read", in: "HTTP/1.1 30",
			ct: "<nil>", wantErr: ErrTruncated, bodyNil: true,
		},
		{
			name: "bad status code: content type still read", in: "HTTP/1.1 2x0 OK\r\nContent-Type: x-sh\r\n\r\n",
			ct: "x-sh", wantErr: ErrMalformed,
		},
		{name: "not a response", in: "GET / HTTP/1.1\r\n\r\n", ct: "<nil>", wantErr: ErrMalformed, bodyNil: true},
		{name: "status 099", in: "HTTP/1.1 099 X\r\n\r\n", ct: "<nil>", wantErr: ErrMalformed},
		{name: "status glued to reason", in: "HTTP/1.1 200OK\r\n\r\n", ct: "<nil>", wantErr: ErrMalformed},
	}
	var r HTTPResponse
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := ParseHTTPResponse([]byte(tc.in), &r)
			if !errors.Is(err, tc.wantErr) || (err == nil) != (tc.wantErr == nil) {
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			}
			ct := "<nil>"
			if r.ContentType != nil {
				ct = string(r.ContentType)
			}
			if ct != tc.ct {
				t.Errorf("ContentType = %q, want %q", ct, tc.ct)
			}
			if string(r.Title) != tc.title {
				t.Errorf("Title = %q, want %q", r.Title, tc.title)
			}
			if (r.Body == nil) != tc.bodyNil || (!tc.bodyNil && string(r.Body) != tc.wantBody) {
				t.Errorf("Body = %q (nil %v)", r.Body, r.Body == nil)
			}
			if err != nil {
				return
			}
			if r.StatusCode != tc.code || string(r.Version) != tc.version || string(r.Reason) != tc.reason {
				t.Errorf("status = %d %q %q", r.StatusCode, r.Version, r.Reason)
			}
		})
	}
}

func TestHTTPCorpus(t *testing.T) {
	hosts := map[string][]string{
		"http_heuristics.pcap": nil,
		"http_trails.pcap":     nil,
	}
	for file := range hosts {
		var r HTTPRequest
		var got []string
		for _, p := range corpusPayloads(t, file) {
			if len(p.data) == 0 || !bytes.Contains(p.data, httpSlash) {
				continue
			}
			if err := ParseHTTPRequest(p.data, &r); err != nil {
				t.Errorf("%s #%d: %v", file, p.index, err)
				continue
			}
			got = append(got, string(r.Method)+" "+string(r.Host))
		}
		if len(got) == 0 {
			t.Errorf("%s: no requests", file)
		}
		t.Logf("%s: %s", file, strings.Join(got, ", "))
	}
	var r HTTPRequest
	for _, p := range corpusPayloads(t, "http_heuristics.pcap") {
		if p.index == 0 {
			if err := ParseHTTPRequest(p.data, &r); err != nil || string(r.Host) != "sqli.example" || string(r.UserAgent) != "curl/8.0" {
				t.Errorf("http_heuristics #0: host %q ua %q err %v", r.Host, r.UserAgent, err)
			}
		}
		if p.index == 4 {
			if err := ParseHTTPRequest(p.data, &r); err != nil || string(r.Method) != "POST" || string(r.Body) != "q=1 UNION ALL SELECT pwd FROM users" {
				t.Errorf("http_heuristics #4: %q body %q err %v", r.Method, r.Body, err)
			}
		}
	}
}

func TestParseHTTPAllocs(t *testing.T) {
	req := []byte(sqliRequest)
	post := []byte(postRequest)
	resp := []byte("HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n\r\n<title>x</title>")
	var r HTTPRequest
	var s HTTPResponse
	n := testing.AllocsPerRun(100, func() {
		_ = ParseHTTPRequest(req, &r)
		_ = ParseHTTPRequest(post, &r)
		_ = r.ForwardedFor()
		_ = ParseHTTPRequest(req[:10], &r) // error path
		_ = ParseHTTPResponse(resp, &s)
		_ = ParseHTTPResponse(req, &s) // error path
	})
	if n != 0 {
		t.Errorf("HTTP parsers: %v allocs, want 0", n)
	}
}

func BenchmarkParseHTTPRequest(b *testing.B) {
	req := []byte("GET /download/update.php?id=4711&token=abc HTTP/1.1\r\n" +
		"Host: updates.example.org\r\n" +
		"User-Agent: Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Safari/537.36\r\n" +
		"Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\n" +
		"Accept-Language: en-US,en;q=0.5\r\nAccept-Encoding: gzip, deflate\r\n" +
		"Connection: keep-alive\r\nCookie: session=0123456789abcdef0123456789abcdef\r\n\r\n")
	var r HTTPRequest
	b.ReportAllocs()
	b.SetBytes(int64(len(req)))
	for b.Loop() {
		if err := ParseHTTPRequest(req, &r); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkParseHTTPResponse(b *testing.B) {
	resp := []byte("HTTP/1.1 200 OK\r\nDate: Mon, 27 Jul 2009 12:28:53 GMT\r\nServer: Apache\r\n" +
		"Content-Type: text/html; charset=UTF-8\r\nContent-Length: 88\r\n\r\n" +
		"<html><head><title>Welcome</title></head><body>It works</body></html>")
	var r HTTPResponse
	b.ReportAllocs()
	b.SetBytes(int64(len(resp)))
	for b.Loop() {
		if err := ParseHTTPResponse(resp, &r); err != nil {
			b.Fatal(err)
		}
	}
}

func httpSeeds(f *testing.F) {
	f.Add([]byte(sqliRequest))
	f.Add([]byte(postRequest))
	f.Add([]byte("CONNECT evil.com:443 HTTP/1.1\r\nHost: evil.com:443\r\n\r\n"))
	f.Add([]byte("HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n\r\n<title>Domain Seized"))
	f.Add([]byte("GET / HTTP/1.1\r\nX-X-Forwarded-For: 1.1.1.1\r\ntrue-client-ip:3.3.3.3\r\n\r\n"))
	for _, file := range corpusFiles(f) {
		if strings.HasPrefix(file, "http_") {
			for _, p := range corpusPayloads(f, file) {
				f.Add(p.data)
			}
		}
	}
}

func FuzzParseHTTPRequest(f *testing.F) {
	httpSeeds(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		var r HTTPRequest
		err := ParseHTTPRequest(b, &r)
		if err != nil {
			if !errors.Is(err, ErrTruncated) && !errors.Is(err, ErrMalformed) {
				t.Fatalf("untyped error %v", err)
			}
			return
		}
		line := string(r.Method) + " " + string(r.Path) + " " + string(r.Version) + "\r\n"
		if !bytes.HasPrefix(b, []byte(line)) || len(r.Method) == 0 || len(r.Path) == 0 {
			t.Fatalf("request line %q does not start %q", line, b)
		}
		xff, cf, tci := r.Forwarded()
		for _, v := range [][]byte{r.Host, r.UserAgent, r.ContentType, xff, cf, tci, r.Body, r.ForwardedFor()} {
			if v != nil && !bytes.Contains(b, v) {
				t.Fatalf("field %q not from the input", v)
			}
		}
		if r.Host != nil && !r.HostFound {
			t.Fatal("Host without HostFound")
		}
	})
}

func FuzzParseHTTPResponse(f *testing.F) {
	httpSeeds(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		var r HTTPResponse
		err := ParseHTTPResponse(b, &r)
		if err != nil && !errors.Is(err, ErrTruncated) && !errors.Is(err, ErrMalformed) {
			t.Fatalf("untyped error %v", err)
		}
		if err == nil && (r.StatusCode < 100 || r.StatusCode > 999 || !bytes.HasPrefix(b, r.Version)) {
			t.Fatalf("status %d version %q", r.StatusCode, r.Version)
		}
		for _, v := range [][]byte{r.ContentType, r.Title, r.Body, r.Reason} {
			if v != nil && !bytes.Contains(b, v) {
				t.Fatalf("field %q not from the input", v)
			}
		}
	})
}
