package main

import (
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xdpflow/xdpflow/internal/testkit/flowcheck"
	"github.com/xdpflow/xdpflow/internal/testkit/testnet"
	"github.com/xdpflow/xdpflow/internal/testkit/trafficgen"
)

// crashTraffic is 300 flows (UDP and TCP, IPv4 and IPv6) of one frame
// each; a round sends every one once.
func crashTraffic(t *testing.T, pair *testnet.Pair) []trafficgen.Built {
	mix := trafficgen.RoundMix(300, 1)
	built, err := trafficgen.Build(mix, pair.MACA, pair.MACB, 1)
	if err != nil {
		t.Fatal(err)
	}
	return built
}

// pinsOutsideSys mounts a bpffs of the test's own: `ip netns exec`
// remounts /sys, so pins there would die with each probe.
func pinsOutsideSys(t *testing.T, pair *testnet.Pair) string {
	dir := t.TempDir()
	if err := unix.Mount("bpf", dir, "bpf", 0, "mode=0700"); err != nil {
		t.Fatalf("mount bpffs: %v", err)
	}
	t.Cleanup(func() { unix.Unmount(dir, unix.MNT_DETACH) })
	return filepath.Join(dir, "xdpflow", pair.LinkB)
}

// kill9 ends the probe as the OOM killer would.
func (p *probeProc) kill9(t *testing.T) {
	t.Helper()
	p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.exited
	p.exited <- nil // for the cleanup
}

// TestCrashSafe: the probe killed with SIGKILL at random moments while
// traffic flows (drain, save and export run every 50 ms, so kills land in
// each; the second kill comes just after a SIGTERM, during the final
// export), three times in a row, started again each time on the same pins
// and flow state; at the end SIGTERM and --detach export the rest. nfdump
// holds exactly what was sent, flow by flow. Several seeds.
func TestCrashSafe(t *testing.T) {
	bin := buildProbe(t)
	for seed := range uint64(3) {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 12))
			pair := newTestPair(t, fmt.Sprint("xc", seed))
			pins := pinsOutsideSys(t, pair)
			nf := flowcheck.StartNfcapd(t, pair)
			args := []string{"--ipfix", nf.URL, "--pin-path", pins, "--idle-timeout", "2s", "--active-timeout", "3s", "--drain-interval", "50ms"}
			frames := crashTraffic(t, pair)
			want := flowcheck.Sums{}
			const rounds = 30 // 9,000 frames at about 3,000 a second
			p := startProbe(t, pair, args...)
			sent := make(chan error, 1)
			go func() {
				for range rounds {
					if err := trafficgen.SendFrom(func(fn func() error) error { return pair.In(pair.A, fn) }, pair.IfindexA, frames); err != nil {
						sent <- err
						return
					}
					time.Sleep(100 * time.Millisecond)
				}
				sent <- nil
			}()
			for _, f := range frames {
				want.AddSent(f, rounds)
			}
			var logs []string
			for kill := range 3 {
				time.Sleep(time.Duration(100+rng.IntN(700)) * time.Millisecond)
				if kill == 1 { // during shutdown's final export
					p.cmd.Process.Signal(syscall.SIGTERM)
					time.Sleep(time.Duration(rng.IntN(20)) * time.Millisecond)
				}
				p.kill9(t)
				logs = append(logs, p.stderr.String())
				time.Sleep(time.Duration(rng.IntN(400)) * time.Millisecond) // counted by the pinned program alone
				p = startProbe(t, pair, args...)
				if !strings.Contains(p.stderr.String(), "carrying on with the pinned datapath") {
					t.Fatalf("start %d after kill -9 did not take over the pins:\n%s", kill+1, p.stderr.String())
				}
			}
			if err := <-sent; err != nil {
				t.Fatal(err)
			}
			time.Sleep(300 * time.Millisecond) // every frame through the veth
			p.stop(t)
			out, err := exec.Command("ip", "netns", "exec", pair.NsName("b"), bin, "--detach", "-i", pair.LinkB,
				"--ipfix", nf.URL, "--pin-path", pins, "--state-dir", stateDir(t, pair)).CombinedOutput()
			if err != nil {
				t.Fatalf("--detach: %v\n%s", err, out)
			}
			all := strings.Join(logs, "\n--- kill -9 ---\n") + "\n" + p.stderr.String()
			compareResent(t, "nfdump", nf.Flows(t), want.WithoutL2(), maybeSentTwice(all))
			if t.Failed() {
				t.Logf("probe logs:\n%s", all)
			}
		})
	}
}

// TestCrashDuringDetach: `--detach` (with an exporter) killed part-way,
// then run again, still exports every packet once and removes the pins
// and the flow state.
func TestCrashDuringDetach(t *testing.T) {
	bin := buildProbe(t)
	pair := newTestPair(t, "xcd")
	pins := pinsOutsideSys(t, pair)
	nf := flowcheck.StartNfcapd(t, pair)
	frames := crashTraffic(t, pair)
	want := flowcheck.Sums{}
	// A probe that held flows and records when it was killed.
	p := startProbe(t, pair, "--ipfix", nf.URL, "--pin-path", pins, "--idle-timeout", "1h", "--active-timeout", "1h", "--drain-interval", "50ms")
	for range 3 {
		send(t, pair, frames)
		want.AddFrames(frames)
		time.Sleep(100 * time.Millisecond)
	}
	p.kill9(t)
	send(t, pair, frames) // counted by the pinned program alone
	want.AddFrames(frames)
	time.Sleep(200 * time.Millisecond)
	detach := func() *exec.Cmd {
		return exec.Command("ip", "netns", "exec", pair.NsName("b"), bin, "--detach", "-i", pair.LinkB,
			"--ipfix", nf.URL, "--pin-path", pins, "--state-dir", stateDir(t, pair))
	}
	for _, after := range []time.Duration{30 * time.Millisecond, 60 * time.Millisecond} {
		d := detach()
		if err := d.Start(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(after)
		d.Process.Signal(syscall.SIGKILL)
		d.Wait()
	}
	if out, err := detach().CombinedOutput(); err != nil {
		t.Fatalf("--detach: %v\n%s", err, out)
	}
	compare(t, "nfdump", nf.Flows(t), want.WithoutL2())
	for _, left := range []string{pins, stateDir(t, pair)} {
		if _, err := os.Stat(left); !os.IsNotExist(err) {
			t.Errorf("%s left after --detach: %v", left, err)
		}
	}
}

// TestPinsThatDie: pins on the bpffs `ip netns exec` mounts for the probe
// alone die with it, and the probe says so at start.
func TestPinsThatDie(t *testing.T) {
	pair := newTestPair(t, "xcw")
	col := collector(t, pair)
	p := startProbe(t, pair, "--ipfix", col.URL()) // the default --pin-path, under /sys
	if log := p.stderr.String(); !strings.Contains(log, "--pin-path is on a bpffs that dies with this process") {
		t.Errorf("no warning about pins that die with the probe:\n%s", log)
	}
	p.stop(t)
}

// maybeSentTwice sums what the restarted probes said they resend: the
// records of the message in flight at a kill -9, which may have gone out
// already (docs/operations.md: at most that message twice, per exporter).
func maybeSentTwice(logs string) int {
	n := 0
	for _, m := range regexp.MustCompile(`records_maybe_sent_twice=(\d+)`).FindAllStringSubmatch(logs, -1) {
		v, _ := strconv.Atoi(m[1])
		n += v
	}
	return n
}

// compareResent is compare under that contract: every flow exact, except
// that up to resent of them may have one record more (more than sent, at
// most twice it); none may fall short.
func compareResent(t *testing.T, who string, got, want flowcheck.Sums, resent int) {
	t.Helper()
	over := 0
	for id, w := range want {
		g := got[id]
		if g != w && g.Packets > w.Packets && g.Bytes > w.Bytes && g.Packets <= 2*w.Packets && g.Bytes <= 2*w.Bytes {
			over++
			got[id] = w
		}
	}
	if over > resent {
		t.Errorf("%s: %d flows got more than sent, but the probes resent at most %d records", who, over, resent)
	}
	compare(t, who, got, want)
}
