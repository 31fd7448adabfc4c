// Command demo is what `make demo` runs: it builds two throwaway network
// namespaces joined by a veth pair, attaches the xdpflow datapath in native
// XDP mode on the receiving end, sends a known mix of flows across, and
// prints each flow as the kernel counted it next to what was sent.
package main

import (
	"flag"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"sort"
	"text/tabwriter"
	"time"

	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/ringbuf"
	"github.com/gopacket/gopacket/layers"

	"github.com/xdpflow/xdpflow/bpf"
	"github.com/xdpflow/xdpflow/internal/testnet"
	"github.com/xdpflow/xdpflow/internal/trafficgen"
)

func main() {
	scale := flag.Int("scale", 10, "send each flow of the mix this many times over")
	sampleRate := flag.Uint("sample-rate", 1000, "sample 1 in N frame heads into the ring buffer (0: off)")
	flag.Parse()
	if err := run(*scale, uint32(*sampleRate)); err != nil {
		slog.Error("demo failed", "err", err)
		os.Exit(1)
	}
}

func run(scale int, sampleRate uint32) error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("the demo creates network namespaces and loads XDP: run it as root (sudo make demo)")
	}
	d, err := bpf.Load(bpf.Config{SampleRate: sampleRate})
	if err != nil {
		return err
	}
	defer d.Close()

	pair, err := testnet.NewPair("xfdemo", testnet.Options{})
	if err != nil {
		return err
	}
	defer pair.Close()
	var l link.Link
	if err := pair.In(pair.B, func() (err error) {
		l, err = link.AttachXDP(link.XDPOptions{Program: d.Program, Interface: pair.IfindexB, Flags: link.XDPDriverMode})
		return err
	}); err != nil {
		return fmt.Errorf("attach XDP (native) to %s: %w", pair.LinkB, err)
	}
	defer l.Close()
	fmt.Printf("xdpflow datapath attached (native XDP) to %s in netns %s-b; sending from %s-a\n\n", pair.LinkB, pair.Name, pair.Name)

	type sent struct{ packets, bytes int }
	want := map[string]sent{}
	mix, err := trafficgen.Build(trafficgen.Mix(), pair.MACA, pair.MACB, scale)
	if err != nil {
		return err
	}
	total := 0
	for _, f := range mix {
		w := want[flowName(f.Flow)]
		want[flowName(f.Flow)] = sent{w.packets + f.Packets, w.bytes + f.Packets*f.L3}
		total += f.Packets
	}
	start := time.Now()
	if err := pair.In(pair.A, func() error {
		s, err := trafficgen.NewSender(pair.IfindexA)
		if err != nil {
			return err
		}
		defer s.Close()
		_, err = s.SendAll(mix)
		return err
	}); err != nil {
		return err
	}
	elapsed := time.Since(start)
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if st, err := d.Stats(); err == nil && st.FlowPackets >= uint64(total) {
			break
		}
	}

	old, err := d.Rotate()
	if err != nil {
		return err
	}
	type row struct {
		name string
		v    bpf.FlowValue
	}
	var rows []row
	if err := d.Drain(old, func(k bpf.FlowKey, v bpf.FlowValue) {
		rows = append(rows, row{keyName(k), v})
	}); err != nil {
		return err
	}
	sort.Slice(rows, func(i, j int) bool { return rows[i].name < rows[j].name })

	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "flow (as counted in the kernel)\tpackets\tL3 bytes\tTCP flags\tsent packets\tsent bytes\texact\t")
	exact := 0
	for _, r := range rows {
		w, ok := want[r.name]
		match := ok && uint64(w.packets) == r.v.Packets && uint64(w.bytes) == r.v.Bytes
		if match {
			exact++
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%#03x\t%d\t%d\t%v\t\n", r.name, r.v.Packets, r.v.Bytes, r.v.TcpFlags, w.packets, w.bytes, match)
	}
	tw.Flush()

	st, err := d.Stats()
	if err != nil {
		return err
	}
	fmt.Printf("\n%d frames sent in %v; datapath saw %d frames: %d in flows, %d non-IP, %d malformed, %d not attributed (table full)\n",
		total, elapsed.Round(time.Millisecond), st.Packets, st.FlowPackets, st.NonIp, st.MalformedTotal(), st.UpdateFailedPackets)
	if sampleRate > 0 {
		n := countSamples(d)
		fmt.Printf("header samples (1 in %d): %d written, %d lost to a full ring, %d read back\n", sampleRate, st.Samples, st.SamplesLost, n)
	}
	if exact != len(want) || len(rows) != len(want) {
		return fmt.Errorf("%d of %d flows exact, %d flows in the table", exact, len(want), len(rows))
	}
	fmt.Printf("all %d flows counted exactly\n", exact)
	return nil
}

func countSamples(d *bpf.Datapath) int {
	rd, err := ringbuf.NewReader(d.Samples)
	if err != nil {
		return 0
	}
	defer rd.Close()
	n := 0
	for {
		rd.SetDeadline(time.Now().Add(50 * time.Millisecond))
		rec, err := rd.Read()
		if err != nil {
			return n
		}
		if _, err := bpf.ParseSample(rec.RawSample); err == nil {
			n++
		}
	}
}

func flowName(f trafficgen.Flow) string {
	sport, dport := f.Ports()
	return fmt.Sprintf("vlan%d %s %s > %s", f.VLAN, protoName(uint8(f.Proto)),
		netip.AddrPortFrom(f.Src, sport), netip.AddrPortFrom(f.Dst, dport))
}

func keyName(k bpf.FlowKey) string {
	return fmt.Sprintf("vlan%d %s %s > %s", k.VlanId, protoName(k.Proto),
		netip.AddrPortFrom(k.Src(), k.SrcPort), netip.AddrPortFrom(k.Dst(), k.DstPort))
}

func protoName(p uint8) string {
	return layers.IPProtocol(p).String()
}
