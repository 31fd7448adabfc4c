package main

import (
	"fmt"
	"time"

	"github.com/xdpflow/xdpflow/internal/cmd/benchproc"
	"github.com/xdpflow/xdpflow/internal/testkit/testnet"
)

// rateResult is one rate run of one case.
type rateResult struct {
	kind      kind
	rep       int
	sent      int
	received  uint64 // B's rx_packets over the run
	vethDrops uint64 // frames veth could not put on B's ring (A's xdp_xmit_errors)
	elapsed   time.Duration
	// CPU seconds over the window: B's NAPI thread(s) and the probe's
	// processes (the receiving side); everything CPU rxCPU did (a
	// cross-check: the two above should be nearly all of it); the whole
	// system, sender included (context).
	napi, probe, rxCPUBusy, wholeBusy float64
	prog0, prog1                      progStats // B's XDP program, --prog-stats
	counted                           uint64    // packets of the rate flows in the probe's export
	stats                             string    // the peers' libpcap statistics
}

// perMpkt is sec per million frames B received.
func (r rateResult) perMpkt(sec float64) float64 {
	if r.received == 0 {
		return 0
	}
	return sec / (float64(r.received) / 1e6)
}

// rxSide is the run's receiving-side CPU per million frames received: the
// figure the monitoring cost is the difference of.
func (r rateResult) rxSide() float64 { return r.perMpkt(r.napi + r.probe) }

// nsPerRun of B's XDP program (--prog-stats), 0 if unknown.
func (r rateResult) nsPerRun() float64 {
	runs := r.prog1.runs - r.prog0.runs
	if runs == 0 {
		return 0
	}
	return float64(r.prog1.runtime-r.prog0.runtime) / float64(runs)
}

// runRate runs case k once: the probe started, the frames sent, a window
// until its flows have expired and it is idle, then its export collected.
func runRate(k kind, pair *testnet.Pair, cfg *config, rep int) (rateResult, error) {
	res := rateResult{kind: k, rep: rep, sent: cfg.packets}
	r, err := startProbe(k, pair, cfg)
	if err != nil {
		return res, err
	}
	if err := measure(&res, r, pair, cfg); err != nil {
		r.abort()
		return res, err
	}
	msgs, err := r.finish(pair)
	if err != nil {
		return res, err
	}
	res.stats = r.stats
	if k != baseline {
		sums := decodeAll(msgs).sums
		for id := range xdpTruth(cfg.packets) {
			res.counted += sums[id].Packets
		}
	}
	return res, nil
}

// snapshot is what measure reads at both ends of the window.
type snapshot struct {
	rx, xmitErr, napi, probe uint64
	prog                     progStats
	cpu                      cpuTimes
}

func takeSnapshot(pair *testnet.Pair, napi []int, pid int) (s snapshot, err error) {
	if s.rx, err = received(pair); err != nil {
		return s, err
	}
	if s.xmitErr, err = xdpXmitErrors(pair); err != nil {
		return s, err
	}
	if s.napi, err = ticksOf(napi); err != nil {
		return s, fmt.Errorf("NAPI thread: %w", err)
	}
	if pid != 0 {
		if s.probe, err = benchproc.TreeCPUTicks(pid); err != nil {
			return s, fmt.Errorf("probe process: %w", err)
		}
	}
	if s.prog, err = readProgStats(pair); err != nil {
		return s, err
	}
	s.cpu, err = readCPUTimes()
	return s, err
}

// measure sends the frames and fills res with what the window cost.
func measure(res *rateResult, r *running, pair *testnet.Pair, cfg *config) error {
	// The NAPI thread can be new (XDP attached); the probe was started
	// pinned.
	napi, err := pinNAPI(pair)
	if err != nil {
		return err
	}
	pid := r.PID()
	s0, err := takeSnapshot(pair, napi, pid)
	if err != nil {
		return err
	}
	t0 := time.Now()
	if err := sendXDP(pair, cfg.packets); err != nil {
		return err
	}
	res.elapsed = time.Since(t0)
	// The window goes on until the flows have expired and been exported
	// (idle timeout + expiry tick), the same length for every case, and
	// longer while a probe is still busy catching up.
	time.Sleep(time.Duration(idleTimeout+2) * time.Second)
	if err := waitIdle(pid); err != nil {
		return err
	}
	s1, err := takeSnapshot(pair, napi, pid)
	if err != nil {
		return err
	}
	if s1.prog.id != s0.prog.id {
		return fmt.Errorf("%s: the XDP program on %s changed during the run (id %d, then %d)", r.kind, pair.LinkB, s0.prog.id, s1.prog.id)
	}
	res.received, res.vethDrops = s1.rx-s0.rx, s1.xmitErr-s0.xmitErr
	res.napi = float64(s1.napi-s0.napi) / benchproc.UserHZ
	res.probe = float64(s1.probe-s0.probe) / benchproc.UserHZ
	res.rxCPUBusy = cpuBusy(s0.cpu, s1.cpu, rxCPU)
	res.wholeBusy = allBusy(s0.cpu, s1.cpu)
	res.prog0, res.prog1 = s0.prog, s1.prog
	return nil
}

// waitIdle waits (up to a minute) until the probe's processes have used
// no CPU over two 250 ms polls in a row; nothing to wait for without one.
func waitIdle(pid int) error {
	if pid == 0 {
		return nil
	}
	last, still := uint64(0), 0
	for deadline := time.Now().Add(time.Minute); still < 2 && time.Now().Before(deadline); time.Sleep(250 * time.Millisecond) {
		t, err := benchproc.TreeCPUTicks(pid)
		if err != nil {
			return fmt.Errorf("probe process: %w", err)
		}
		if t == last {
			still++
		} else {
			still = 0
		}
		last = t
	}
	return nil
}
