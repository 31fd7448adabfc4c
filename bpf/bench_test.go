package bpf

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"runtime"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/ringbuf"
	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"golang.org/x/sys/unix"

	"github.com/xdpflow/xdpflow/bpf/bpftest"
)

// Benchmarks of the datapath through BPF_PROG_TEST_RUN: the kernel runs the
// program over one frame `repeat` times and measures the time per run, with
// no syscall in between. docs/benchmarks.md has the figures and the command.

// pinCPU keeps the benchmark on one CPU: the benchmarks that make a new
// flow per packet count keys with a per-CPU counter, and a run that moved
// to another CPU would make keys the other CPU had made already.
func pinCPU(b *testing.B) {
	runtime.LockOSThread()
	var one, all unix.CPUSet
	if err := unix.SchedGetaffinity(0, &all); err != nil {
		b.Fatal(err)
	}
	one.Set(0)
	if err := unix.SchedSetaffinity(0, &one); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		unix.SchedSetaffinity(0, &all)
		runtime.UnlockOSThread()
	})
}

func benchFrames() map[string][]byte {
	return map[string][]byte{
		"ipv4-tcp": pad(build(eth(layers.EthernetTypeIPv4), ipv4(layers.IPProtocolTCP), tcp(40000, 443, tACK)), 64),
		"ipv6-udp": pad(build(eth(layers.EthernetTypeIPv6), ipv6(layers.IPProtocolUDP), udp(40000, 53)), 64),
		"vlan-tcp": pad(build(eth(layers.EthernetTypeIPv4, 100), ipv4(layers.IPProtocolTCP), tcp(40000, 443, tACK)), 64),
		// Two labels, IPv4 inside; PPPoE session over QinQ, IPv4 inside.
		"mpls-tcp":  pad(build(eth(layers.EthernetTypeMPLSUnicast), mpls(true, 100, 200), ipv4(layers.IPProtocolTCP), tcp(40000, 443, tACK)), 64),
		"pppoe-tcp": pppoeFrame(eth(layers.EthernetTypePPPoESession, 100, 200), pppIPv4, ipv4(layers.IPProtocolTCP), tcp(40000, 443, tACK)),
	}
}

// measure runs p over frame b.N times in chunks of at most chunk runs,
// calling between (untimed) after each chunk, and reports the kernel's
// ns per packet.
func measure(b *testing.B, p *ebpf.Program, frame []byte, chunk int, between func()) {
	b.Helper()
	var total float64
	left := b.N
	for left > 0 {
		n := min(left, chunk)
		_, per, err := p.Benchmark(frame, n, nil)
		if err != nil {
			b.Fatal(err)
		}
		total += float64(per.Nanoseconds()) * float64(n)
		left -= n
		if between != nil && left > 0 {
			b.StopTimer()
			between()
			b.StartTimer()
		}
	}
	b.ReportMetric(total/float64(b.N), "ns/pkt")
}

var benchChunk = DefaultMaxFlows * 3 / 4

// The floor: an XDP program that only returns XDP_PASS (bpf/testdata/empty.c).
func BenchmarkEmptyProgram(b *testing.B) {
	// The datapath is loaded too, as for every other benchmark: its clock
	// timer runs meanwhile.
	load(b, Config{MaxFlows: 1024})
	p, err := bpftest.LoadEmpty()
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close()
	measure(b, p, benchFrames()["ipv4-tcp"], 1<<30, nil)
}

// encapBench is a frame whose innermost packet is a plain frame's
// (benchFrames()[plain]), inside levels tunnel or mirror encapsulations.
type encapBench struct {
	name   string
	cfg    Config
	frame  []byte
	plain  string
	levels int
	// What the flow is keyed with: checked after the run, so that a row
	// measures the path it names.
	tunnel TunnelType
	mirror MirrorType
}

// encapBenchFrames are the tunnel and mirror rows of ExistingFlow (issue
// #13: at most +10 ns per encapsulation level over the plain frame).
func encapBenchFrames() []encapBench {
	// The IP packets of ipv4-tcp and ipv6-udp.
	in4 := serialize(ipv4(layers.IPProtocolTCP), tcp(40000, 443, tACK))
	in6 := serialize(ipv6(layers.IPProtocolUDP), udp(40000, 53))
	e4 := eth(layers.EthernetTypeIPv4)
	P := func(b []byte) gopacket.Payload { return b }
	tunnel := func(kinds ...nestKind) []byte {
		pkt, _, _, _ := nest(in4, kinds...)
		return build(e4, P(pkt))
	}
	const greN, udpN = layers.IPProtocolGRE, layers.IPProtocolUDP
	ersII := &layers.GRE{Protocol: layers.EthernetTypeERSPAN, SeqPresent: true, Seq: 9}
	vx := tunnel(nestVXLAN)
	return []encapBench{
		{"gre-key", Config{}, tunnel(nestGRE), "ipv4-tcp", 1, TunnelGRE, MirrorNone},
		{"ipv4-in-ipv4", Config{}, tunnel(nestIPIP), "ipv4-tcp", 1, TunnelIPIP, MirrorNone},
		{"ipv6-in-ipv4", Config{}, build(e4, o4(1, layers.IPProtocolIPv6), P(in6)), "ipv6-udp", 1, TunnelIPIP, MirrorNone},
		{"vxlan", Config{}, vx, "ipv4-tcp", 1, TunnelVXLAN, MirrorNone},
		{"geneve", Config{}, tunnel(nestGeneve), "ipv4-tcp", 1, TunnelGeneve, MirrorNone},
		{"gtpu", Config{}, tunnel(nestGTPU), "ipv4-tcp", 1, TunnelGTPU, MirrorNone},
		{"vxlan-in-gre", Config{}, tunnel(nestGRE, nestVXLAN), "ipv4-tcp", 2, TunnelVXLAN, MirrorNone},
		{"vxlan-x3", Config{}, tunnel(nestVXLAN, nestVXLAN, nestVXLAN), "ipv4-tcp", 3, TunnelVXLAN, MirrorNone},
		{"erspan2-mirror", mirrorCfg(MirrorERSPAN, 0), build(e4, o4(1, greN), ersII, erspan2(0x155, 0), P(eth4Of(in4))),
			"ipv4-tcp", 1, TunnelNone, MirrorERSPAN},
		{"vxlan-mirror", mirrorCfg(MirrorVXLAN, 0), vx, "ipv4-tcp", 1, TunnelNone, MirrorVXLAN},
		{"tzsp-mirror", mirrorCfg(MirrorTZSP, 0), build(e4, o4(1, udpN), udp(49152, PortTZSP), tzsp(), P(eth4Of(in4))),
			"ipv4-tcp", 1, TunnelNone, MirrorTZSP},
		// The outer view (--tunnels outer): the outer packet's flow, no
		// tunnel parsed (a UDP flow to 4789, a GRE flow).
		{"vxlan-outer", Config{TunnelsOuter: true}, vx, "ipv4-tcp", 0, TunnelNone, MirrorNone},
		{"gre-outer", Config{TunnelsOuter: true}, tunnel(nestGRE), "ipv4-tcp", 0, TunnelNone, MirrorNone},
	}
}

// One flow, already in the table: the common case on a busy link. The
// plain frames, then the tunnels and mirrors.
func BenchmarkExistingFlow(b *testing.B) {
	for _, name := range []string{"ipv4-tcp", "ipv6-udp", "vlan-tcp", "mpls-tcp", "pppoe-tcp"} {
		b.Run(name, func(b *testing.B) {
			d := load(b, Config{})
			measure(b, d.Program, benchFrames()[name], 1<<30, nil)
		})
	}
	for _, e := range encapBenchFrames() {
		b.Run(e.name, func(b *testing.B) {
			d := load(b, e.cfg)
			measure(b, d.Program, e.frame, 1<<30, nil)
			b.StopTimer()
			flows := drainAll(b, d)
			if len(flows) != 1 {
				b.Fatalf("%d flows, want 1", len(flows))
			}
			for k := range flows {
				if TunnelType(k.TunnelType) != e.tunnel || MirrorType(k.MirrorType) != e.mirror {
					b.Fatalf("flow keyed tunnel %v, mirror %v; want %v, %v", TunnelType(k.TunnelType), MirrorType(k.MirrorType), e.tunnel, e.mirror)
				}
			}
		})
	}
}

// The multi-buffer twin (FragsProgram) on the same one-buffer frames: what
// bpf_xdp_get_buff_len adds where the driver refuses the plain program
// (jumbo MTUs); and on a 8,928-byte frame in three buffers.
func BenchmarkExistingFlowFrags(b *testing.B) {
	for _, name := range []string{"ipv4-tcp", "ipv6-udp", "vlan-tcp"} {
		b.Run(name, func(b *testing.B) {
			d := load(b, Config{})
			measure(b, d.FragsProgram, benchFrames()[name], 1<<30, nil)
		})
	}
	b.Run("ipv4-udp-8928", func(b *testing.B) {
		d := load(b, Config{})
		measure(b, d.FragsProgram, build(eth(layers.EthernetTypeIPv4), ipv4(layers.IPProtocolUDP), udp(5000, 9000), payload(8928-42)), 1<<30, nil)
	})
}

// Every packet a new flow: the cost of creating table entries, in the
// probe's steady state (tables rotated and drained between chunks).
func BenchmarkNewFlow(b *testing.B) {
	pinCPU(b)
	d := load(b, Config{benchFlows: 1<<32 - 1})
	// Stay below the table size, and empty the table between chunks,
	// so that every packet really inserts.
	measure(b, d.Program, benchFrames()["ipv4-tcp"], benchChunk, rotateAndDrain(b, d))
	b.StopTimer()
	checkNoFailures(b, d)
}

// checkNoFailures fails a benchmark whose packets did not all land in a
// flow: it would not measure what it names.
func checkNoFailures(b *testing.B, d *Datapath) {
	st, err := d.Stats()
	if err != nil {
		b.Fatal(err)
	}
	if st.UpdateFailedPackets != 0 {
		b.Fatalf("%d packets found no slot", st.UpdateFailedPackets)
	}
}

// BenchmarkNewFlowLocalNets is BenchmarkNewFlow (HASH) with --local-net:
// the direction's two LPM trie lookups on every new flow.
func BenchmarkNewFlowLocalNets(b *testing.B) {
	nets := []netip.Prefix{netip.MustParsePrefix("198.18.0.0/24"), netip.MustParsePrefix("2001:db8:1::/48")}
	for i := range 62 { // a realistic list: 64 prefixes
		nets = append(nets, netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(i), 0, 0}), 16))
	}
	pinCPU(b)
	d := load(b, Config{benchFlows: 1<<32 - 1, LocalNets: nets})
	measure(b, d.Program, benchFrames()["ipv4-tcp"], benchChunk, rotateAndDrain(b, d))
}

// Every packet a new flow into freshly created tables: the floor of the
// insert path. After rotations (BenchmarkNewFlow) the free entries were
// released by the drain on another CPU and are colder.
func BenchmarkNewFlowFreshTable(b *testing.B) {
	newFlowFreshTable(b, Config{}, benchFrames()["ipv4-tcp"])
}

// BenchmarkNewFlowFreshTableTCPHealth is BenchmarkNewFlowFreshTable with
// --tcp-health, for what it adds to a new flow: "ack", the same frame (a
// flow first seen mid-conversation: the conversation lookup misses);
// "syn", a SYN (the conversation is inserted, the precise clock read).
// A fresh table's chunk, DefaultMaxFlows/4, is DefaultTCPConversations,
// so every SYN finds room.
func BenchmarkNewFlowFreshTableTCPHealth(b *testing.B) {
	syn := pad(build(eth(layers.EthernetTypeIPv4), ipv4(layers.IPProtocolTCP), tcp(40000, 443, tSYN)), 64)
	b.Run("ack", func(b *testing.B) { newFlowFreshTable(b, Config{TCPHealth: true}, benchFrames()["ipv4-tcp"]) })
	b.Run("syn", func(b *testing.B) { newFlowFreshTable(b, Config{TCPHealth: true}, syn) })
}

func newFlowFreshTable(b *testing.B, cfg Config, frame []byte) {
	pinCPU(b)
	cfg.benchFlows = 1<<32 - 1
	var total float64
	for left := b.N; left > 0; {
		b.StopTimer()
		d, err := Load(cfg)
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		n := min(left, DefaultMaxFlows/4)
		_, per, err := d.Program.Benchmark(frame, n, nil)
		if err == nil {
			// The row measures what it names: every packet a new flow,
			// every SYN a conversation inserted.
			b.StopTimer()
			var st Stats
			if st, err = d.Stats(); err == nil && (st.NewFlows != uint64(n) || st.TcpConvsFull != 0) {
				err = fmt.Errorf("%d new flows of %d packets, %d conversations not inserted (map full)", st.NewFlows, n, st.TcpConvsFull)
			}
		}
		d.Close()
		if err != nil {
			b.Fatal(err)
		}
		total += float64(per.Nanoseconds()) * float64(n)
		left -= n
	}
	b.ReportMetric(total/float64(b.N), "ns/pkt")
}

// 1M live flows in a 1M-flow table, each packet the next flow: the table
// no longer fits in the CPU caches, so this is the worst case for lookups.
func BenchmarkMillionFlows(b *testing.B) {
	const flows = 1 << 20
	pinCPU(b)
	d := load(b, Config{MaxFlows: flows, benchFlows: flows})
	frame := benchFrames()["ipv4-tcp"]
	if _, _, err := d.Program.Benchmark(frame, flows, nil); err != nil { // fill
		b.Fatal(err)
	}
	b.ResetTimer()
	measure(b, d.Program, frame, 1<<30, nil)
	b.StopTimer()
	checkNoFailures(b, d)
}

// Userspace side: draining rotated tables with the batch syscalls. One op
// is one flow read and deleted.
func BenchmarkDrain(b *testing.B) {
	drainBench(b, Config{}, benchFrames()["ipv4-tcp"])
}

// BenchmarkDrainTCPHealth is BenchmarkDrain with --tcp-health, every flow
// a TCP data segment's: each flow's sequence state is carried into
// tcp_carry before the flow is deleted (a sweep empties the carry between
// rounds, untimed).
func BenchmarkDrainTCPHealth(b *testing.B) {
	t := tcp(40000, 443, tACK|tPSH)
	t.Seq = 1000
	frame := build(eth(layers.EthernetTypeIPv4), ipv4(layers.IPProtocolTCP), t, payload(100))
	drainBench(b, Config{TCPHealth: true, TCPConversations: 131072}, frame)
}

// BenchmarkRotate is the swap of empty tables: each slot update waits for
// running programs (synchronize_rcu); with --tcp-health the table taken
// out goes into the second slot first, a second wait.
func BenchmarkRotate(b *testing.B) {
	for _, on := range []bool{false, true} {
		name := "tcp-health-off"
		if on {
			name = "tcp-health-on"
		}
		b.Run(name, func(b *testing.B) {
			d := load(b, Config{MaxFlows: 1024, TCPHealth: on})
			for b.Loop() {
				if _, err := d.Rotate(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func drainBench(b *testing.B, cfg Config, frame []byte) {
	pinCPU(b)
	cfg.benchFlows = 1<<32 - 1
	d := load(b, cfg)
	b.ReportAllocs()
	b.ResetTimer()
	drained := 0
	for left := b.N; left > 0; {
		n := min(left, 200000)
		b.StopTimer()
		if _, err := d.SweepTCP(^uint64(0)); err != nil {
			b.Fatal(err)
		}
		if _, _, err := d.Program.Benchmark(frame, n, nil); err != nil {
			b.Fatal(err)
		}
		old, err := d.Rotate()
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		if err := d.Drain(old, func(FlowKey, FlowValue) { drained++ }); err != nil {
			b.Fatal(err)
		}
		left -= n
	}
	b.StopTimer()
	if drained != b.N {
		b.Fatalf("drained %d flows, want %d", drained, b.N)
	}
	if cs := d.CarryStats(); cs != (CarryStats{}) {
		b.Fatalf("%+v flows not carried", cs)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "flows/s")
}

// Existing flow plus header sampling, with a consumer reading the ring as
// the probe will. Compare with ExistingFlow/ipv4-tcp.
func BenchmarkSampling(b *testing.B) {
	for _, rate := range []uint32{1000, 100, 1} {
		b.Run(fmt.Sprintf("1-in-%d", rate), func(b *testing.B) {
			d := load(b, Config{SampleRate: rate})
			rd, err := ringbuf.NewReader(d.Samples)
			if err != nil {
				b.Fatal(err)
			}
			done := make(chan int)
			go func() {
				n := 0
				var rec ringbuf.Record
				for {
					rd.SetDeadline(time.Now().Add(10 * time.Millisecond))
					if err := rd.ReadInto(&rec); err != nil {
						if errors.Is(err, os.ErrDeadlineExceeded) {
							continue
						}
						done <- n // closed
						return
					}
					n++
				}
			}()
			measure(b, d.Program, benchFrames()["ipv4-tcp"], 1<<30, nil)
			b.StopTimer()
			time.Sleep(50 * time.Millisecond)
			rd.Close()
			read := <-done
			st, err := d.Stats()
			if err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(st.SamplesLost)/float64(st.Samples+st.SamplesLost), "lost/sample")
			if uint64(read) > st.Samples {
				b.Fatalf("read %d samples, %d written", read, st.Samples)
			}
		})
	}
}
