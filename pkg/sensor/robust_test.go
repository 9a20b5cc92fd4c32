package sensor

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/xtrail/xtrail/pkg/dataplane"
	"github.com/xtrail/xtrail/pkg/maltrail"
	"github.com/xtrail/xtrail/pkg/throttle"
	"github.com/xtrail/xtrail/pkg/trails"
)

// TestAgentHTTPHost: a Host that is empty, or becomes empty once ":80" is
// stripped, stays empty as in Maltrail (`if host and host[0].isalpha()`):
// no "<dst> (<host>)" event, and the URL trail text is the bare path. A
// single such request used to stop the sensor (host[0] of an empty slice).
func TestAgentHTTPHost(t *testing.T) {
	names, err := trails.LoadNames(strings.NewReader("/malicious-login.php,malware (test),(static)\n"), "t.csv", trails.DefaultWhitelist())
	if err != nil {
		t.Fatal(err)
	}
	rules := NameRules{Names: names, Whitelist: trails.DefaultWhitelist()}
	at := time.Date(2023, 11, 14, 22, 13, 20, 0, time.UTC)
	src, dst := netip.MustParseAddr("10.0.0.66"), netip.MustParseAddr("203.0.113.44")
	const head = `"2023-11-14 22:13:20.000000" t 10.0.0.66 50000 203.0.113.44 80 TCP `
	const m = ` "malware (test)" (static)`
	cases := []struct{ host, want string }{
		{"Host: :80\r\n", head + "URL /malicious-login.php" + m},
		{"Host:\r\n", head + "URL /malicious-login.php" + m},
		{"Host:  :80 \r\n", head + "URL /malicious-login.php" + m},
		{"", head + "URL (203.0.113.44)/malicious-login.php" + m}, // no Host: dst_ip
		{"Host: HostCheck.Example:80\r\n", head + `IP "203.0.113.44 (hostcheck.example)"` + m + "\n" +
			head + "URL (hostcheck.example)/malicious-login.php" + m},
		{"Host: a:8080\r\n", head + `IP "203.0.113.44 (a)"` + m + "\n" + head + "URL (a:8080)/malicious-login.php" + m},
		{"Host: [::1]:80\r\n", head + "URL ([::1])/malicious-login.php" + m},
		{"Host: [::1\r\n", head + "URL ([::1)/malicious-login.php" + m},
	}
	for _, c := range cases {
		t.Run(strings.TrimSpace(c.host), func(t *testing.T) {
			out := newCapture()
			a := NewAgent(AgentConfig{Meta: fakeMeta{7: {"malware (test)", "(static)"}}, Rules: rules,
				Render: &maltrail.Renderer{Sensor: "t", Loc: time.UTC}, Out: out, Throttle: throttle.Off})
			req := "GET /malicious-login.php HTTP/1.1\r\n" + c.host + "User-Agent: x\r\n\r\n"
			a.Handle(rec(dataplane.KindHTTP, dataplane.SideDst, dataplane.TrailIP, 6, src, dst, 50000, 80, 7, at, []byte(req)))
			if got := strings.Join(out.get(), ""); got != c.want+"\n" {
				t.Errorf("events:\n%swant:\n%s\n", got, c.want)
			}
		})
	}
}
