package sensor

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/xtrail/xtrail/internal/lab"
	"github.com/xtrail/xtrail/internal/testenv"
	"github.com/xtrail/xtrail/pkg/dataplane"
	"github.com/xtrail/xtrail/pkg/deploy"
	"github.com/xtrail/xtrail/pkg/throttle"
)

// TestDeploy: `xtrail trails load` without a sensor loads the kernel maps
// for the store; a sensor starting on the store keeps them; a load while
// it runs has the sensor switch its kernel generation and its name trails
// to the new store; a store the sensor does not read is refused.
func TestDeploy(t *testing.T) {
	l := lab.New(t)
	pinDir := testenv.PinDir(t)
	dir := t.TempDir()
	xts := filepath.Join(dir, "trails"+storeExt)
	compile := func(path, csv string) [32]byte { return compileStore(t, path, csv) }
	ctx := context.Background()
	maps, err := dataplane.OpenTrailMaps(pinDir)
	if err != nil {
		t.Fatal(err)
	}
	defer maps.Close()

	sumA := compile(xts, "203.0.113.93,lab a (malware),(custom)\nevil-a-test.com,lab a (malware),(custom)\n")
	res, err := deploy.Deploy(ctx, pinDir, xts, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if res.Kernel == nil || res.Sensor != 0 || res.Kernel.IP4 != 1 {
		t.Fatalf("deploy without a sensor: %+v", res)
	}
	genA, _ := maps.Generation()

	// The sensor reloads on SIGHUP, as `xtrail sensor` does; here the
	// sensor runs in this process, so the signal comes here.
	hctx, stopHup := context.WithCancel(ctx)
	defer stopHup()
	reload := ReloadOnHangup(hctx)

	c, stop := liveSensor(t, l, Options{PinDir: pinDir, TrailsFile: xts, Throttle: throttle.Off, Reload: reload, WatchEvery: -1})
	defer stop()
	if g, _ := maps.Generation(); g != genA {
		t.Errorf("the sensor rebuilt the generation deploy loaded: %d, then %d", genA, g)
	}
	p := newProber(t, l, c)
	if !p.ip("203.0.113.93") || !p.dns("evil-a-test.com") {
		t.Fatal("the deployed store's trails do not fire")
	}

	sumB := compile(xts, "203.0.113.94,lab b (malware),(custom)\nevil-b-test.com,lab b (malware),(custom)\n")
	res, err = deploy.Deploy(ctx, pinDir, xts, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if res.Sensor != os.Getpid() || res.Kernel != nil {
		t.Fatalf("deploy with a sensor running: %+v", res)
	}
	if id, live := maps.LiveID(); !live || id != sumB || id == sumA {
		t.Fatalf("after deploy the live generation records %x, want the new store's %x", id[:4], sumB[:4])
	}
	if !p.ip("203.0.113.94") || !p.dns("evil-b-test.com") {
		t.Error("the new store's trails do not fire right after the deploy returned")
	}
	if p.ip("203.0.113.93") || p.dns("evil-a-test.com") {
		t.Error("the replaced store's trails still fire")
	}

	// a store the sensor does not read: refused, the kernel untouched
	other := filepath.Join(dir, "other"+storeExt)
	compile(other, "203.0.113.95,lab c (malware),(custom)\n")
	if _, err := deploy.Deploy(ctx, pinDir, other, 10*time.Second); !errors.Is(err, deploy.ErrOtherFile) {
		t.Fatalf("deploy of a store the sensor does not read: %v", err)
	}
	if id, _ := maps.LiveID(); id != sumB {
		t.Error("a refused deploy changed the kernel's generation")
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
}
