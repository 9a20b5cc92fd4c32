package progress

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xtrail/xtrail/internal/testenv"
)

func TestRender(t *testing.T) {
	for _, c := range []struct {
		done, total int64
		want        string
	}{
		{0, 4 << 20, "load [..........]   0%  0.0/4.0 MiB"},
		{1 << 20, 4 << 20, "load [##........]  25%  1.0/4.0 MiB"},
		{4 << 20, 4 << 20, "load [##########] 100%  4.0/4.0 MiB"},
		{5 << 20, 4 << 20, "load [##########] 100%  4.0/4.0 MiB"}, // more than announced
		{-1, 4 << 20, "load [..........]   0%  0.0/4.0 MiB"},
		{3 << 19, -1, "load 1.5 MiB"}, // unknown total
	} {
		if got := Render("load", c.done, c.total, 10); got != c.want {
			t.Errorf("Render(%d, %d) = %q, want %q", c.done, c.total, got, c.want)
		}
	}
}

func TestNotATerminal(t *testing.T) {
	f, err := os.Create(filepath.Join(t.TempDir(), "out"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := New(f)
	if b != nil {
		t.Fatal("a bar on a plain file")
	}
	b.Update("x", 1, 2) // a nil bar is a no-op
	b.Done()
	if st, _ := f.Stat(); st.Size() != 0 {
		t.Fatalf("%d bytes written to a non-terminal", st.Size())
	}
}

// TestTerminal draws on a real pseudo-terminal.
func TestTerminal(t *testing.T) {
	master, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		if testenv.InCI() {
			t.Fatalf("no pseudo-terminals: %v", err)
		}
		t.Skipf("skipped outside CI: no pseudo-terminals here: %v", err)
	}
	defer master.Close()
	if err := unix.IoctlSetPointerInt(int(master.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Fatal(err)
	}
	n, err := unix.IoctlGetInt(int(master.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Fatal(err)
	}
	tty, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer tty.Close()
	t.Setenv("TERM", "xterm")
	b := New(tty)
	if b == nil {
		t.Fatal("no bar on a terminal")
	}
	b.Update("load", 1<<20, 2<<20)
	b.Update("load", 2<<20, 2<<20) // within redrawEvery: not drawn
	var logged strings.Builder
	fmt.Fprint(b.Clearing(&logged), "a log line\n") // clears the bar first
	b.Done()                                        // nothing left to clear
	if logged.String() != "a log line\n" {
		t.Errorf("log writer got %q", logged.String())
	}
	buf := make([]byte, 512)
	got := ""
	master.SetReadDeadline(time.Now().Add(2 * time.Second))
	for !strings.HasSuffix(got, "\r\x1b[K") {
		k, err := master.Read(buf)
		if err != nil {
			t.Fatalf("read terminal: %v (got %q)", err, got)
		}
		got += string(buf[:k])
	}
	want := "\r" + Render("load", 1<<20, 2<<20, 30) + "\x1b[K" + "\r\x1b[K"
	if got != want {
		t.Fatalf("terminal got %q, want %q", got, want)
	}
}
