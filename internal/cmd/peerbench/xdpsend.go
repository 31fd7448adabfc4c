package main

import (
	"bytes"
	"fmt"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"golang.org/x/sys/unix"

	"github.com/xdpflow/xdpflow/internal/testkit/flowcheck"
	"github.com/xdpflow/xdpflow/internal/testkit/testnet"
)

// The sender: frames enter veth A as XDP frames, not as skbs from an
// AF_PACKET socket. An XDP program that only does
// `return bpf_redirect(ifindex of A, 0)` is run with BPF_PROG_TEST_RUN in
// live-frames mode from a thread inside namespace A, pinned to sendCPU:
// the kernel builds each frame in a page_pool page (XDP headroom
// included), runs the program, and the redirect hands the frame to A's
// ndo_xdp_xmit, which puts it on B's receive ring as an xdp_frame. B's XDP
// program (if any) then runs on it without the copy veth's native XDP
// path makes of an skb with little headroom, as on a NIC's receive
// buffer; with XDP_PASS (or no program) veth builds an skb around the
// frame for the stack. veth accepts XDP frames only while B's NAPI is
// enabled: an XDP program on B, or GRO on (enableGRO). Frames B's ring has
// no room for are dropped by veth and counted in A's
// tx_queue_*_xdp_xmit_errors (and B's rx_dropped): reported, never
// retried, and outside every cost (costs are per frame B received).

// bpfFTestXDPLiveFrames is BPF_F_TEST_XDP_LIVE_FRAMES (linux/bpf.h).
const bpfFTestXDPLiveFrames = 1 << 1

// xdpBatch is RunOptions.BatchSize: frames per batch the kernel allocates,
// runs and flushes (below veth's 256-entry ring).
const xdpBatch = 64

func newRedirectProg(ifindex int) (*ebpf.Program, error) {
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{Type: ebpf.XDP, License: "GPL",
		Instructions: asm.Instructions{
			asm.Mov.Imm(asm.R1, int32(ifindex)),
			asm.Mov.Imm(asm.R2, 0),
			asm.FnRedirect.Call(),
			asm.Return(),
		}})
	if err != nil {
		return nil, fmt.Errorf("load redirect XDP program: %w", err)
	}
	return prog, nil
}

// xdpFrames is how many of the rate flows the sender uses, one frame
// each: flow i is (i mod 15, i mod 256), i < xdpFrames. Each
// BPF_PROG_TEST_RUN call repeats one frame and costs a fixed setup and
// teardown (a page_pool per call), so the sender uses fewer flows than the
// 3,840 distinct rate flows.
var xdpFrames = 64

// The sender's frames are addressed to xdpDstMAC, not to B's MAC: as
// on a span port, the frames are not for the host running the probe, and
// whatever reaches B's stack (baseline, XDP_PASS, softflowd) is dropped
// early as PACKET_OTHERHOST rather than after a route lookup.
var xdpDstMAC = net.HardwareAddr{0x02, 0x00, 0x5e, 0x00, 0x53, 0x01}

func xdpFrameSet(pair *testnet.Pair) ([][]byte, error) {
	if bytes.Equal(pair.MACB, xdpDstMAC) {
		return nil, fmt.Errorf("xdp sender: B's MAC is %s, the sender's foreign destination MAC", xdpDstMAC)
	}
	frames := make([][]byte, xdpFrames)
	for i := range frames {
		f, _, err := rateFlow(i%rateSrcs, i%ratePorts).Frame(pair.MACA, xdpDstMAC)
		if err != nil {
			return nil, err
		}
		frames[i] = f
	}
	return frames, nil
}

// xdpTruth: n packets spread evenly over the sender's flows.
func xdpTruth(n int) flowcheck.Sums {
	want := flowcheck.Sums{}
	for i := 0; i < xdpFrames; i++ {
		f := rateFlow(i%rateSrcs, i%ratePorts)
		want[flowcheck.ID{Src: f.Src, Dst: f.Dst, SrcPort: f.SrcPort, DstPort: 9, Proto: 17}] =
			flowcheck.Totals{Packets: uint64(n / xdpFrames), Bytes: uint64(n / xdpFrames * rateL3)}
	}
	return want
}

// xdpCalls and xdpCallTime: BPF_PROG_TEST_RUN calls made and the time they
// took, over the whole benchmark (for the report; one sender at a time).
var (
	xdpCalls    int
	xdpCallTime time.Duration
)

// sendXDP sends n frames over the sender's flows from one thread inside
// A, pinned to sendCPU, running the redirect program in live-frames mode
// once per flow with Repeat = n/xdpFrames.
func sendXDP(pair *testnet.Pair, n int) error {
	frames, err := xdpFrameSet(pair)
	if err != nil {
		return err
	}
	prog, err := newRedirectProg(pair.IfindexA)
	if err != nil {
		return err
	}
	defer prog.Close()
	repeat := n / len(frames)
	if repeat < 1 {
		return fmt.Errorf("sender: %d frames is less than one per flow", n)
	}
	return pair.In(pair.A, func() error {
		// A signal arriving during a live-frames run makes the kernel
		// return EINTR after the batches already sent, and cilium/ebpf
		// then runs it again from the start: frames sent twice. This
		// thread (thrown away afterwards, see testnet.Pair.In) blocks
		// every signal instead.
		all := unix.Sigset_t{}
		for i := range all.Val {
			all.Val[i] = ^all.Val[i]
		}
		if err := unix.PthreadSigmask(unix.SIG_BLOCK, &all, nil); err != nil {
			return fmt.Errorf("block signals: %w", err)
		}
		if err := pinSenderThread(); err != nil {
			return err
		}
		for _, f := range frames {
			t0 := time.Now()
			// In live-frames mode the kernel returns no program result;
			// B's rx counters show what was delivered.
			_, err := prog.Run(&ebpf.RunOptions{Data: f, Repeat: uint32(repeat),
				Flags: bpfFTestXDPLiveFrames, BatchSize: xdpBatch})
			if err != nil {
				return fmt.Errorf("BPF_PROG_TEST_RUN (live frames): %w", err)
			}
			xdpCalls++
			xdpCallTime += time.Since(t0)
		}
		return nil
	})
}

// enableGRO turns GRO on for B's veth end (inside B): veth enables NAPI on
// B's receive queues, which it needs to accept XDP frames when no XDP
// program is attached to B (baseline and softflowd).
func enableGRO(pair *testnet.Pair) error {
	out, err := exec.Command("ip", "netns", "exec", pair.NsName("b"), "ethtool", "-K", pair.LinkB, "gro", "on").CombinedOutput()
	if err != nil {
		return fmt.Errorf("ethtool -K %s gro on (in %s): %v: %s", pair.LinkB, pair.NsName("b"), err, out)
	}
	return nil
}

// xdpXmitErrors sums A's tx_queue_*_xdp_xmit_errors (`ethtool -S` inside
// A): XDP frames redirected into A that veth could not put on B's ring.
func xdpXmitErrors(pair *testnet.Pair) (uint64, error) {
	out, err := exec.Command("ip", "netns", "exec", pair.NsName("a"), "ethtool", "-S", pair.LinkA).CombinedOutput()
	if err != nil {
		return 0, fmt.Errorf("ethtool -S %s: %v: %s", pair.LinkA, err, out)
	}
	var sum uint64
	found := false
	for _, l := range strings.Split(string(out), "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(l), ":")
		if !ok || !strings.HasPrefix(k, "tx_queue_") || !strings.HasSuffix(k, "_xdp_xmit_errors") {
			continue
		}
		x, err := strconv.ParseUint(strings.TrimSpace(v), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("ethtool -S %s: %q", pair.LinkA, l)
		}
		sum += x
		found = true
	}
	if !found {
		return 0, fmt.Errorf("ethtool -S %s: no tx_queue_*_xdp_xmit_errors:\n%s", pair.LinkA, out)
	}
	return sum, nil
}
