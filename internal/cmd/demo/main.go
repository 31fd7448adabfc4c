// Command demo is what `make demo` runs: it builds two throwaway network
// namespaces joined by a veth pair, starts xdpflow-probe on the receiving
// end exporting IPFIX to a collector on that namespace's loopback, sends a
// realistic mix of flows from the other end with the project's generator,
// prints every flow record as it arrives (decoded by goflow2, an
// independent decoder), and checks the totals against what was sent. It
// removes everything it made on exit and touches no other interface.
package main

import (
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/pflag"

	"github.com/xdpflow/xdpflow/internal/syncbuf"
	"github.com/xdpflow/xdpflow/internal/testkit/flowcheck"
	"github.com/xdpflow/xdpflow/internal/testkit/testnet"
	"github.com/xdpflow/xdpflow/internal/testkit/trafficgen"
)

func main() {
	probe := pflag.String("probe", "bin/xdpflow-probe", "the xdpflow-probe binary to run")
	scale := pflag.Int("scale", 10, "send each flow of the mix this many times over")
	pflag.Usage = func() {
		fmt.Fprintf(os.Stderr, "usage: sudo go run ./internal/cmd/demo [flags]\n\n"+
			"xdpflow-probe on a veth in throwaway namespaces, exporting IPFIX; a\n"+
			"traffic mix, every record printed and checked (what make demo runs).\n\n%s", pflag.CommandLine.FlagUsages())
	}
	pflag.Parse()
	if err := run(*probe, *scale); err != nil {
		slog.Error("demo failed", "err", err)
		os.Exit(1)
	}
}

func run(probe string, scale int) error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("the demo creates network namespaces and attaches XDP: run it as root (sudo make demo)")
	}
	if _, err := os.Stat(probe); err != nil {
		return fmt.Errorf("probe binary: %w (run `make demo`, which builds it)", err)
	}
	pair, err := testnet.NewPair("xfdemo", testnet.Options{})
	if err != nil {
		return err
	}
	defer pair.Close()
	// Ctrl-C still cleans up.
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	go func() { <-sig; pair.Close(); os.Exit(130) }()

	conn, err := pair.ListenUDP(pair.B)
	if err != nil {
		return err
	}
	dec := flowcheck.NewDecoder()
	got := flowcheck.Sums{}
	var mu sync.Mutex
	var decodeErr error
	coll := flowcheck.Collect(conn, func(msg []byte) {
		recs, err := dec.Decode(msg)
		mu.Lock()
		defer mu.Unlock()
		if err != nil && decodeErr == nil {
			decodeErr = err
		}
		for i := range recs {
			f := &recs[i]
			got.AddRecord(f)
			fmt.Printf("%-12s %-19s %-58s %8d %10d %#6x\n", time.Unix(0, f.TimeFlowEndNs).Format("15:04:05.000"), f.EndReason,
				flowcheck.IDOf(f), f.Packets, f.Bytes, f.TcpFlags)
		}
	})

	var logs syncbuf.Buffer
	cmd := exec.Command("ip", "netns", "exec", pair.NsName("b"), probe, "-i", pair.LinkB,
		"--ipfix", coll.URL(), "--idle-timeout", "2s", "--active-timeout", "4s", "--drain-interval", "500ms",
		// ip netns exec gives the probe a /sys of its own: pins there would
		// die with it, so the demo runs unpinned (and without flow state).
		"--pin-path", "")
	cmd.Stderr = &logs
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start probe: %w", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
		}
	}()
	for deadline := time.Now().Add(20 * time.Second); !strings.Contains(logs.String(), "attached"); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			return fmt.Errorf("probe did not start:\n%s", logs.String())
		}
	}
	fmt.Printf("xdpflow-probe attached to %s in netns %s; exporting IPFIX to %s\n\n", pair.LinkB, pair.NsName("b"), coll.URL())
	fmt.Printf("%-12s %-19s %-58s %8s %10s %6s\n", "flow end", "end reason", "flow (decoded from IPFIX by goflow2)", "packets", "bytes", "flags")

	want := flowcheck.Sums{}
	mix, err := trafficgen.Build(trafficgen.Mix(), pair.MACA, pair.MACB, scale)
	if err != nil {
		return err
	}
	long, err := trafficgen.Build([]trafficgen.Flow{{Src: netip.MustParseAddr("198.18.5.5"), Dst: netip.MustParseAddr("198.18.0.2"),
		Proto: 17, SrcPort: 6000, DstPort: 6001, Payload: 500, Packets: 100}}, pair.MACA, pair.MACB, 1)
	if err != nil {
		return err
	}
	const bursts = 10
	want.AddFrames(mix)
	want.AddSent(long[0], bursts)
	sent := 0
	if err := pair.In(pair.A, func() error {
		s, err := trafficgen.NewSender(pair.IfindexA)
		if err != nil {
			return err
		}
		defer s.Close()
		n, err := s.SendAll(mix)
		sent += n
		if err != nil {
			return err
		}
		for _, j := range trafficgen.JunkMix(pair.MACA, pair.MACB) {
			for i := 0; i < j.Packets; i++ {
				if err := s.Send(j.Frame); err != nil {
					return err
				}
				sent++
			}
		}
		// A long flow: exported in active-timeout records that add up.
		for i := 0; i < bursts; i++ {
			n, err := s.SendAll(long)
			sent += n
			if err != nil {
				return err
			}
			time.Sleep(600 * time.Millisecond)
		}
		return nil
	}); err != nil {
		return err
	}
	time.Sleep(2500 * time.Millisecond)
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-exited:
		if err != nil {
			return fmt.Errorf("probe: %v\n%s", err, logs.String())
		}
	case <-time.After(15 * time.Second):
		return fmt.Errorf("probe did not stop on SIGTERM")
	}
	time.Sleep(100 * time.Millisecond)
	coll.Stop()

	fmt.Printf("\n%d frames sent (%d flows, plus non-IP and malformed frames). The probe's log:\n%s\n", sent, len(want), logs.String())
	mu.Lock()
	defer mu.Unlock()
	if decodeErr != nil {
		return fmt.Errorf("IPFIX decode: %w", decodeErr)
	}
	if diff := flowcheck.Diff(got, want); len(diff) > 0 {
		return fmt.Errorf("exported flows differ from the traffic:\n  %s", strings.Join(diff, "\n  "))
	}
	fmt.Printf("all %d flows exported with exact packet and byte counts (records of each flow summed)\n", len(want))
	return nil
}
